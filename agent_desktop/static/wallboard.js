// The supervisor wallboard: queue tiles, agents, a chart of today's calls, and listen/whisper/barge/force actions.
"use strict";
(() => {
  const root = document.getElementById("wallboard");
  const queues = new Map();
  const agents = new Map();
  let today = {agents: {}, missed: {}, calls: {}}; // from the database and the PBX: survives restarts
  const socket = io("/supervisor", {transports: ["websocket", "polling"]});
  const say = (text) => { document.getElementById("wallboard-message").textContent = text; };
  const ack = (result) => say(result && result.ok ? "Done." : `Not done: ${(result && result.error) || "no answer"}`);
  const SL_ALERT = 80;     // service level below this is highlighted
  const WAIT_ALERT = 60;   // a caller waiting longer than this (seconds) is highlighted

  function tile(stats) {
    const sl = stats.service_level_pct;
    const alert = (sl !== null && sl !== undefined && sl < SL_ALERT) || stats.longest_wait_seconds > WAIT_ALERT;
    const figure = (label, value, cls) => crm.el("div", {class: `figure ${cls || ""}`}, crm.el("span", {class: "value"}, value), crm.el("span", {class: "label"}, label));
    return crm.el("article", {class: `tile panel ${alert ? "alert" : ""}`, "data-queue": stats.queue},
      crm.el("h2", {}, stats.queue),
      crm.el("div", {class: "figures"},
        figure("waiting", stats.waiting, "waiting"),
        figure("longest wait", crm.clock(stats.longest_wait_seconds), stats.longest_wait_seconds > WAIT_ALERT ? "bad" : ""),
        figure("answered", stats.answered, "answered"),
        figure("abandoned", stats.abandoned, "abandoned"),
        figure(`SL ${root.dataset.sl}s`, sl === null || sl === undefined ? "–" : `${sl}%`, sl !== null && sl < SL_ALERT ? "bad" : ""),
        figure("avg wait", `${stats.average_wait_seconds}s`),
        figure("avg talk", `${stats.average_talk_seconds}s`),
      ),
      crm.el("p", {class: "muted"}, `agents: ${stats.logged_in} logged in · ${stats.available} available · ${stats.on_call} on call · ${stats.paused} paused · ${stats.wrap_up} wrap-up`),
      crm.el("p", {class: "missed"}, crm.el("a", {href: `/missed-calls?queue=${encodeURIComponent(stats.queue)}`},
        `${today.missed[stats.queue] || 0} missed to call back`)),
    );
  }

  function drawQueues() {
    const box = document.getElementById("queues");
    box.replaceChildren(...[...queues.values()].sort((a, b) => a.queue.localeCompare(b.queue)).map(tile));
  }

  function drawAgents() {
    const body = document.getElementById("agents");
    body.replaceChildren();
    for (const a of [...agents.values()].sort((x, y) => x.agent.localeCompare(y.agent))) {
      const since = a.changed_at || a.since;
      const button = (label, handler) => crm.el("button", {onclick: handler}, label);
      const actions = crm.el("td", {class: "actions"},
        button("Listen", () => socket.emit("spy", {agent: a.agent, mode: "listen"}, ack)),
        button("Whisper", () => socket.emit("spy", {agent: a.agent, mode: "whisper"}, ack)),
        button("Barge", () => socket.emit("spy", {agent: a.agent, mode: "barge"}, ack)),
        button("Pause", () => socket.emit("force_pause", {agent: a.agent, reason: "Supervisor"}, ack)),
      );
      for (const q of a.queues || []) actions.append(button(`Log out of ${q}`, () => socket.emit("force_logout", {agent: a.agent, queue: q}, ack)));
      const known = today.agents[a.agent] || {};
      for (const q of known.queues || []) {
        if (!(a.queues || []).includes(q)) actions.append(button(`Log in to ${q}`, () => socket.emit("force_login", {agent: a.agent, queue: q}, ack)));
      }
      const move = crm.el("select", {"aria-label": "Move to queue"}, crm.el("option", {value: ""}, "Move to…"), ...[...queues.keys()].map((q) => crm.el("option", {value: q}, q)));
      move.addEventListener("change", () => { if (move.value && (a.queues || [])[0]) socket.emit("move_agent", {agent: a.agent, from_queue: a.queues[0], to_queue: move.value}, ack); });
      actions.append(move);
      body.append(crm.el("tr", {class: `state-${a.state}`, "data-agent": a.agent},
        crm.el("td", {}, a.agent, known.name ? crm.el("span", {class: "muted"}, ` ${known.name}`) : null),
        crm.el("td", {}, crm.el("span", {class: "badge", "data-state": a.state}, a.state.replace("_", " ") + (a.reason || a.paused_reason ? ` (${a.reason || a.paused_reason})` : ""))),
        crm.el("td", {class: "since", "data-since": since || ""}, since ? crm.clock((Date.now() - new Date(since)) / 1000) : ""),
        crm.el("td", {}, (a.queues || []).join(", ")),
        crm.el("td", {class: "caller"}, a.linkedid ? (today.calls[a.linkedid] || {}).caller || "…" : ""),
        crm.el("td", {class: "calls-today"}, known.calls_today ?? 0),
        actions,
      ));
    }
  }

  async function drawChart() {
    const result = await crm.api("GET", "/api/wallboard/intervals");
    if (!result.ok) return;
    const rows = result.data.intervals;
    const svg = document.getElementById("chart");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const top = Math.max(1, ...rows.map((r) => r.offered));
    const width = 960 / Math.max(rows.length, 1);
    rows.forEach((r, i) => {
      const answered = document.createElementNS(ns, "rect");
      const h1 = 150 * r.answered / top, h2 = 150 * (r.offered - r.answered) / top;
      answered.setAttribute("x", i * width + 1); answered.setAttribute("width", Math.max(1, width - 2));
      answered.setAttribute("y", 160 - h1); answered.setAttribute("height", h1); answered.setAttribute("class", "answered");
      const other = document.createElementNS(ns, "rect");
      other.setAttribute("x", i * width + 1); other.setAttribute("width", Math.max(1, width - 2));
      other.setAttribute("y", 160 - h1 - h2); other.setAttribute("height", h2); other.setAttribute("class", "abandoned");
      const title = document.createElementNS(ns, "title");
      title.textContent = `${new Date(r.start).toLocaleTimeString()}: ${r.offered} offered, ${r.answered} answered, ${r.abandoned} abandoned`;
      other.append(title);
      svg.append(answered, other);
      if (i % 4 === 0) {
        const label = document.createElementNS(ns, "text");
        label.setAttribute("x", i * width); label.setAttribute("y", 176); label.setAttribute("class", "axis");
        label.textContent = new Date(r.start).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
        svg.append(label);
      }
    });
  }

  let fetching = null;
  async function refreshToday() {
    if (fetching) return fetching;
    fetching = (async () => {
      const result = await crm.api("GET", "/api/wallboard/today");
      if (result.ok) { today = result.data; drawQueues(); drawAgents(); }
    })().finally(() => { fetching = null; });
    return fetching;
  }
  socket.on("connect", () => { document.getElementById("pbx-status").textContent = "Live."; refreshToday(); });
  socket.on("connect_error", (error) => {
    document.getElementById("pbx-status").textContent = error && /rejected/i.test(error.message || "")
      ? "Signed out: sign in again." : "The server is not reachable; reconnecting…";
  });
  socket.on("snapshot", (snapshot) => {
    document.getElementById("pbx-status").textContent = snapshot.connected ? "Live." : "The PBX is not connected: figures are frozen.";
    queues.clear(); agents.clear();
    for (const q of snapshot.queues) queues.set(q.queue, q);
    for (const a of snapshot.agents) agents.set(a.agent, a);
    drawQueues(); drawAgents();
  });
  socket.on("queue_stats", (stats) => { queues.set(stats.queue, stats); drawQueues(); });
  socket.on("agent_state", (state) => {
    agents.set(state.agent, {...(agents.get(state.agent) || {}), ...state});
    drawAgents();
    if (state.linkedid && !today.calls[state.linkedid]) refreshToday(); // who is on that call
  });
  socket.on("call_ended", () => { drawChart(); refreshToday(); });
  // a phrase heard: the flagged-call section (recordings/wallboard_flagged.html) fetches itself again
  socket.on("keyword_heard", () => document.body.dispatchEvent(new Event("keyword-heard")));
  // SLA: the tickets-at-risk section (its own partial) reads itself again after live warnings or breaches — once
  // for a burst of them (a scheduler pass may cross thousands of clocks at once), not once per clock
  let slaPending = null;
  const slaChanged = () => {
    if (slaPending) return;
    slaPending = setTimeout(() => { slaPending = null; document.body.dispatchEvent(new Event("sla-changed")); }, 300);
  };
  socket.on("sla_warning", slaChanged);
  socket.on("sla_breach", slaChanged);
  setInterval(() => {
    for (const cell of document.querySelectorAll("td.since")) {
      if (cell.dataset.since) cell.textContent = crm.clock((Date.now() - new Date(cell.dataset.since)) / 1000);
    }
    for (const stats of queues.values()) if (stats.waiting) stats.longest_wait_seconds += 1;
    if ([...queues.values()].some((q) => q.waiting)) drawQueues();
  }, 1000);
  drawChart();
  setInterval(() => { drawChart(); refreshToday(); }, 60000);
})();
