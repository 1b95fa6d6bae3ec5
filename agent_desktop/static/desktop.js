// The agent workspace: the live interactions (ringing, talking, held, wrap-up) on the left, the selected one in the
// middle with its controls and wrap-up, the caller's 360 beside it. Every text from the server is set as text.
"use strict";
(() => {
  const root = document.getElementById("desktop");
  const me = root.dataset.extension;
  const wrapupDefault = Number(root.dataset.wrapup || 0);
  const queues = (root.dataset.queues || "").split(",").filter(Boolean);
  const calls = new Map(); // linkedid -> {card, item, state, since, wrapupUntil}
  const message = document.getElementById("desktop-message");
  const list = document.getElementById("interaction-list");
  const socket = io("/agent", {transports: ["websocket", "polling"]});
  let selected = null;
  let audio = null;

  const say = (text) => { message.textContent = text; };
  const ack = (card) => (result) => {
    const target = card ? card.querySelector(".pop-message") : message;
    target.textContent = result && result.ok ? "Done." : `Not done: ${(result && result.error) || "no answer"}`;
  };
  const send = (event, data, card) => socket.timeout(15000).emit(event, data, (timedOut, result) =>
    ack(card)(timedOut ? {ok: false, error: "the server did not answer in time"} : result));

  socket.on("connect", () => say("Connected."));
  // SMS conversations are interactions too: the workspace's SMS list reloads when a text comes in or moves on
  const smsChanged = () => document.body.dispatchEvent(new Event("sms-changed"));
  socket.on("sms_received", smsChanged);
  socket.on("sms_status", smsChanged);
  // SLA warnings and breaches on the agent's tickets (and escalations to them): a line each, the newest first
  const slaAlert = (kind) => (alert) => {
    const list = document.getElementById("sla-alerts");
    if (!list) return;
    const what = {sla_warning: "nearly due", sla_breach: "overdue", ticket_escalated: "escalated to you"}[kind];
    const link = crm.el("a", {href: `/tickets/${encodeURIComponent(alert.ticket_id)}`}, `Ticket ${alert.ticket_number}`);
    list.prepend(crm.el("li", {"data-kind": kind, "data-ticket": String(alert.ticket_number)}, link, ` ${alert.subject || ""}: ${(alert.kind || alert.clock_kind || "").replace("_", " ")} ${what}`));
    while (list.children.length > 10) list.lastElementChild.remove();
  };
  for (const kind of ["sla_warning", "sla_breach", "ticket_escalated"]) socket.on(kind, slaAlert(kind));
  socket.on("connect_error", (error) => {
    // a refused handshake (signed out, deactivated) is not a server that is restarting
    if (error && /rejected/i.test(error.message || "")) say("Signed out: sign in again to take calls.");
    else say("The server is not reachable; reconnecting…");
  });
  socket.on("disconnect", (reason) => say(reason === "io server disconnect" ? "Signed out by the server: sign in again." : "Connection lost; reconnecting…"));

  // the commands the PBX can carry out; a control needing none of them is removed, not shown disabled
  let capabilities = null;
  function applyCapabilities(scope) {
    if (!capabilities) return;
    for (const control of scope.querySelectorAll("[data-needs]")) {
      if (!control.dataset.needs.split(" ").some((need) => capabilities.has(need))) control.remove();
    }
  }
  socket.on("capabilities", (data) => {
    capabilities = new Set(data.commands || []);
    applyCapabilities(document.getElementById("pop-template").content);
    for (const entry of calls.values()) { applyCapabilities(entry.card); showHoldControls(entry); }
  });

  // Hold while talking, Resume while held (Asterisk parks the caller: hold and resume are one capability)
  function showHoldControls(entry) {
    const hold = entry.card.querySelector(".hold");
    const resume = entry.card.querySelector(".resume");
    if (hold) hold.hidden = entry.state !== "up";
    if (resume) resume.hidden = entry.state !== "held";
  }

  // --- my state and queues -------------------------------------------------------------------------------------
  socket.on("agent_state", (state) => {
    const badge = document.getElementById("agent-state");
    badge.textContent = state.state.replace("_", " ") + (state.reason ? ` (${state.reason})` : "");
    badge.dataset.state = state.state;
    document.getElementById("agent-since").textContent = state.changed_at ? `since ${new Date(state.changed_at).toLocaleTimeString()}` : "";
    if (Array.isArray(state.queues)) {
      for (const button of document.querySelectorAll("#queue-buttons button[data-queue]")) {
        const member = state.queues.includes(button.dataset.queue);
        button.setAttribute("aria-pressed", member ? "true" : "false");
        button.textContent = member ? `${button.dataset.queue}: logged in` : `${button.dataset.queue}: logged out`;
      }
    }
  });
  const queueBox = document.getElementById("queue-buttons");
  for (const queue of queues) {
    const toggle = crm.el("button", {type: "button", "data-queue": queue, "aria-pressed": "false", class: "queue-toggle"}, `${queue}`);
    toggle.addEventListener("click", () => send(toggle.getAttribute("aria-pressed") === "true" ? "queue_logout" : "queue_login", {queue}));
    queueBox.append(toggle);
  }
  document.getElementById("pause").addEventListener("click", () => send("pause", {reason: document.getElementById("pause-reason").value}));
  document.getElementById("unpause").addEventListener("click", () => send("unpause", {}));

  // --- dialling ----------------------------------------------------------------------------------------------
  const dialInput = document.getElementById("dial-number");
  document.getElementById("dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send("dial", {number: dialInput.value});
  });
  for (const key of document.querySelectorAll(".dialpad .key")) key.addEventListener("click", () => { dialInput.value += key.dataset.key; dialInput.focus(); });
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("a.dial-link");
    if (!link) return;
    e.preventDefault();
    send("dial", {number: link.textContent});
  });

  // --- ringing in a background tab ------------------------------------------------------------------------------
  document.getElementById("notify-enable").addEventListener("click", async () => {
    audio = audio || new AudioContext();
    await audio.resume();
    if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
    say("Calls will ring and notify while this tab is in the background.");
  });
  function ring(pop) {
    if (!document.hidden) return;
    if (audio) {
      for (const start of [0, 0.4]) {
        const tone = audio.createOscillator();
        const gain = audio.createGain();
        tone.frequency.value = 440;
        gain.gain.value = 0.15;
        tone.connect(gain).connect(audio.destination);
        tone.start(audio.currentTime + start);
        tone.stop(audio.currentTime + start + 0.25);
      }
    }
    if ("Notification" in window && Notification.permission === "granted") {
      const who = (pop.customer && pop.customer.name) || pop.caller_name || pop.number || "Unknown caller";
      const note = new Notification("Incoming call", {body: `${who} · ${pop.queue || pop.direction || ""}`, tag: pop.linkedid});
      note.onclick = () => { window.focus(); select(pop.linkedid); note.close(); };
    }
  }

  // --- interactions ------------------------------------------------------------------------------------------
  function renderList(sections, title, items, render) {
    const box = crm.el("div", {class: "block"}, crm.el("h3", {}, title));
    if (!items || items.length === 0) { box.append(crm.el("p", {class: "muted"}, "None")); return box; }
    const ul = crm.el("ul");
    for (const item of items) ul.append(crm.el("li", {}, ...render(item)));
    box.append(ul);
    sections.push(box);
  }

  function fillCustomer(entry, pop) {
    const card = entry.card;
    const box = card.querySelector(".pop-customer");
    box.replaceChildren();
    const customer = pop.customer;
    if (!customer) {
      const name = pop.caller_name && pop.caller_name !== pop.number ? `${pop.caller_name} (unknown caller)` : "Unknown caller";
      card.querySelector(".pop-title").textContent = name;
      entry.item.querySelector(".who").textContent = name;
      const unknown = card.querySelector(".unknown");
      unknown.classList.remove("hidden");
      unknown.querySelector('input[name="phone"]').value = pop.number || "";
      if (pop.caller_name && pop.caller_name !== pop.number) unknown.querySelector('input[name="name"]').value = pop.caller_name;
      return;
    }
    card.querySelector(".unknown").classList.add("hidden");
    const title = card.querySelector(".pop-title");
    title.replaceChildren(crm.el("a", {href: `/customers/${encodeURIComponent(customer.id)}`, class: "customer-name", target: "_blank"}, customer.name));
    if (customer.vip_tier) title.append(" ", crm.el("span", {class: "badge vip"}, `VIP ${customer.vip_tier}`));
    entry.item.querySelector(".who").textContent = customer.name;
    const sections = [crm.el("p", {class: "muted"}, [customer.kind, customer.language, (customer.tags || []).join(", ")].filter(Boolean).join(" · "))];
    renderList(sections, "Open tickets", customer.open_tickets, (t) => [`#${t.number} ${t.subject} `, crm.el("span", {class: "badge"}, t.status)]);
    renderList(sections, "Suggested solutions", customer.suggested_solutions, (s) => [crm.el("a", {href: `/kb/${encodeURIComponent(s.id)}`, target: "_blank", rel: "noopener", class: "pop-solution"}, s.title)]);
    renderList(sections, "Last calls", customer.last_calls, (c) => [`${new Date(c.at).toLocaleString()} · ${c.direction} · ${c.outcome}`, c.agent ? ` · agent ${c.agent}` : "", c.disposition ? ` · ${c.disposition}` : ""]);
    renderList(sections, "Last SMS", customer.last_sms, (m) => [`${m.direction}: ${m.body}`]);
    renderList(sections, "Notes", customer.notes, (n) => [n.body]);
    box.append(...sections);
  }

  function fillIvr(card, pop) {
    const dl = card.querySelector(".pop-ivr dl");
    dl.replaceChildren();
    for (const item of pop.ivr || []) dl.append(crm.el("dt", {}, item.label), crm.el("dd", {}, item.value));
    card.querySelector(".pop-ivr").classList.toggle("hidden", !(pop.ivr || []).length);
  }

  function setState(entry, state) {
    entry.state = state;
    entry.since = Date.now();
    for (const badge of [entry.card.querySelector(".call-state"), entry.item.querySelector(".what")]) {
      badge.textContent = state;
      badge.dataset.state = state;
    }
    entry.card.dataset.state = state;
    showHoldControls(entry);
  }

  function busyWith(entry) {
    return entry && (["up", "held", "wrap-up"].includes(entry.state));
  }

  function select(linkedid) {
    const entry = calls.get(linkedid);
    if (!entry) return;
    selected = linkedid;
    for (const [id, other] of calls) {
      const on = id === linkedid;
      other.card.hidden = !on;
      other.item.querySelector("button").setAttribute("aria-current", on ? "true" : "false");
    }
  }

  function forget(linkedid, afterMs) {
    setTimeout(() => {
      const entry = calls.get(linkedid);
      if (!entry) return;
      entry.card.remove();
      entry.item.remove();
      calls.delete(linkedid);
      if (selected === linkedid) {
        selected = null;
        const next = calls.keys().next();
        if (!next.done) select(next.value);
      }
      document.getElementById("no-calls").hidden = calls.size > 0;
    }, afterMs);
  }

  function listItem(linkedid) {
    const button = crm.el("button", {type: "button", class: "interaction", "data-linkedid": linkedid},
      crm.el("span", {class: "who"}, "…"), " ", crm.el("span", {class: "badge what"}, "ringing"));
    const item = crm.el("li", {}, button);
    list.prepend(item);
    return item;
  }

  function adopt(card, item, state) {
    // a card the server rendered (a wrap-up still to save after a reload), or one built from a pop
    const linkedid = card.dataset.linkedid;
    const entry = {card, item, state, since: Date.now(), wrapupUntil: null};
    calls.set(linkedid, entry);
    wire(card, linkedid);
    document.getElementById("no-calls").hidden = true;
    return entry;
  }

  function cardFor(pop) {
    let entry = calls.get(pop.linkedid);
    if (entry) return entry;
    const card = document.getElementById("pop-template").content.firstElementChild.cloneNode(true);
    card.dataset.linkedid = pop.linkedid;
    const form = card.querySelector(".wrapup");
    form.setAttribute("hx-post", `/calls/${encodeURIComponent(pop.linkedid)}/wrap-up-draft`);
    document.getElementById("calls").prepend(card);
    if (window.htmx) window.htmx.process(card);
    entry = adopt(card, listItem(pop.linkedid), "ringing");
    if (!selected || !busyWith(calls.get(selected))) select(pop.linkedid);
    else card.hidden = true;
    return entry;
  }

  function wire(card, linkedid) {
    const on = (selector, event, handler) => { const node = card.querySelector(selector); if (node) node.addEventListener(event, handler); };
    on(".hangup", "click", () => send("hangup", {linkedid}, card));
    on(".hold", "click", () => send("hold", {linkedid}, card));
    on(".resume", "click", () => send("resume", {linkedid}, card));
    const target = card.querySelector(".transfer-target");
    on(".blind", "click", () => send("transfer", {linkedid, target: target.value, kind: "blind"}, card));
    on(".attended", "click", () => send("transfer", {linkedid, target: target.value, kind: "attended"}, card));
    on(".wrapup", "submit", (e) => {
      e.preventDefault();
      const form = e.target;
      socket.timeout(15000).emit("wrap_up", {linkedid, disposition: form.disposition.value, notes: form.notes.value}, (timedOut, result) => {
        const outcome = timedOut ? {ok: false, error: "the server did not answer in time"} : result;
        ack(card)(outcome);
        if (outcome && outcome.ok) {
          setState(calls.get(linkedid), "wrapped up");
          form.classList.add("hidden");
          forget(linkedid, 3000);
        }
      });
    });
    on(".ticket", "submit", async (e) => {
      e.preventDefault();
      const result = await crm.api("POST", `/api/calls/${encodeURIComponent(linkedid)}/ticket`, {subject: e.target.subject.value});
      card.querySelector(".pop-message").textContent = result.ok ? `Ticket #${result.data.number} created, linked to this call.` : `Not created: ${result.data.message}`;
      if (result.ok) e.target.reset();
    });
    on(".create-customer", "submit", async (e) => {
      e.preventDefault();
      const form = e.target;
      const body = {name: form.name.value, phone: form.phone.value, email: form.email.value, linkedid, allow_duplicate: form.dataset.force === "1"};
      const result = await crm.api("POST", "/api/customers", body);
      const dups = card.querySelector(".duplicates");
      dups.replaceChildren();
      if (result.status === 409) {
        dups.append(crm.el("p", {class: "error"}, "Possible duplicates — open one, or press Create customer again to create anyway:"));
        const ul = crm.el("ul");
        for (const c of result.data.details.candidates || []) ul.append(crm.el("li", {}, crm.el("a", {href: `/customers/${encodeURIComponent(c.id)}`, target: "_blank"}, c.name), ` (${c.reason || "similar"})`));
        dups.append(ul);
        form.dataset.force = "1";
      } else if (result.ok) {
        card.querySelector(".pop-message").textContent = `Customer ${result.data.name} created.`;
        fillCustomer(calls.get(linkedid), {customer: {id: result.data.id, name: result.data.name, open_tickets: [], last_calls: [], last_sms: [], notes: [], tags: []}});
      } else {
        card.querySelector(".pop-message").textContent = `Not created: ${result.data.message}`;
      }
    });
  }

  list.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest("button.interaction");
    if (button) select(button.dataset.linkedid);
  });

  // wrap-ups the server still holds for me (after a reload): same cards, same controls
  for (const card of document.querySelectorAll("#calls article.pop.pending")) {
    const item = list.querySelector(`button.interaction[data-linkedid="${CSS.escape(card.dataset.linkedid)}"]`).closest("li");
    const entry = adopt(card, item, "wrap-up");
    card.hidden = true;
    entry.since = Date.now();
  }
  const first = calls.keys().next();
  if (!first.done) select(first.value);

  socket.on("pop", (pop) => {
    const fresh = !calls.has(pop.linkedid);
    const entry = cardFor(pop);
    const card = entry.card;
    if (Array.isArray(pop.commands)) {
      // a call of a PBX that can do less (a generic CTI PBX): only the controls it can carry out stay
      const commands = new Set(pop.commands);
      for (const control of card.querySelectorAll("[data-needs]")) {
        if (!control.dataset.needs.split(" ").some((need) => commands.has(need))) control.remove();
      }
    }
    card.querySelector(".pop-number").textContent = pop.number || "withheld";
    card.querySelector(".pop-queue").textContent = pop.queue || (pop.direction === "outbound" ? "outbound" : "—");
    card.querySelector(".pop-wait").textContent = pop.waited_seconds ?? 0;
    fillCustomer(entry, pop);
    fillIvr(card, pop);
    if (!pop.resent) setState(entry, "ringing");
    if (fresh && !pop.resent) ring(pop);
  });

  socket.on("call_state", (change) => {
    const entry = calls.get(change.linkedid);
    if (!entry) return;
    if (change.state === "transferred" && change.agent === me) {
      // the caller went on to someone else: my part is over; the wrap-up opens when the call ends for good
      setState(entry, "transferred");
      entry.card.querySelector(".controls").classList.add("hidden");
      entry.card.querySelector(".pop-message").textContent = `Transferred to ${change.target}. Your wrap-up opens when the call ends.`;
      return;
    }
    if (entry.state === "transferred" && change.state !== "ended") {
      if (change.state === "up" && change.agent) entry.card.querySelector(".pop-message").textContent = `Transferred to ${change.target || change.agent}; ${change.agent} has the caller now. Your wrap-up opens when the call ends.`;
      return;
    }
    if (change.state === "up" && change.agent && change.agent !== me) {
      setState(entry, `answered by ${change.agent}`);
      forget(change.linkedid, 2000);
      return;
    }
    if (change.state === "ended") {
      if (change.agent === me || ["up", "held", "transferred"].includes(entry.state)) {
        setState(entry, "wrap-up");
        entry.card.querySelector(".wrapup").classList.remove("hidden");
        entry.card.querySelector(".controls").classList.add("hidden");
        entry.wrapupUntil = Date.now() + 1000 * (change.wrapup_seconds ?? wrapupDefault);
      } else {
        setState(entry, change.outcome === "answered" ? "answered elsewhere" : change.outcome);
        forget(change.linkedid, 2000);
      }
      return;
    }
    setState(entry, change.state);
    if (change.state === "up" && (!selected || !busyWith(calls.get(selected)) || selected === change.linkedid)) select(change.linkedid);
  });

  setInterval(() => {
    for (const entry of calls.values()) {
      entry.card.querySelector(".timer").textContent = crm.clock((Date.now() - entry.since) / 1000);
      if (entry.wrapupUntil) {
        const left = (entry.wrapupUntil - Date.now()) / 1000;
        entry.card.querySelector(".wrapup-timer").textContent = left > 0 ? `${crm.clock(left)} left` : "time is up";
      }
    }
  }, 1000);

  // --- keyboard ----------------------------------------------------------------------------------------------
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const card = selected ? calls.get(selected).card : null;
    const keys = {
      r: () => document.getElementById("unpause").click(),
      p: () => document.getElementById("pause").click(),
      d: () => dialInput.focus(),
      h: () => card && card.querySelector(".hangup") && card.querySelector(".hangup").click(),
      t: () => card && card.querySelector(".transfer-target") && card.querySelector(".transfer-target").focus(),
      w: () => card && card.querySelector(".wrapup select").focus(),
      s: () => card && card.querySelector(".wrapup").requestSubmit(),
      arrowup: () => move(-1),
      arrowdown: () => move(1),
    };
    const action = keys[e.key.toLowerCase()];
    if (!action) return;
    e.preventDefault();
    action();
  });
  function move(step) {
    const ids = [...list.querySelectorAll("button.interaction")].map((b) => b.dataset.linkedid);
    if (!ids.length) return;
    const at = Math.max(0, ids.indexOf(selected));
    select(ids[(at + step + ids.length) % ids.length]);
  }
})();
