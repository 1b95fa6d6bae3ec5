// The agent desktop: pops, call state, call controls, wrap-up. Every text from the server is set as text.
"use strict";
(() => {
  const root = document.getElementById("desktop");
  const me = root.dataset.extension;
  const wrapupDefault = Number(root.dataset.wrapup || 0);
  const queues = (root.dataset.queues || "").split(",").filter(Boolean);
  const calls = new Map(); // linkedid -> {card, state, since}
  const message = document.getElementById("desktop-message");
  const socket = io("/agent", {transports: ["websocket", "polling"]});

  const say = (text) => { message.textContent = text; };
  const ack = (card) => (result) => {
    const target = card ? card.querySelector(".pop-message") : message;
    target.textContent = result && result.ok ? "Done." : `Not done: ${(result && result.error) || "no answer"}`;
  };
  const send = (event, data, card) => socket.emit(event, data, ack(card));

  socket.on("connect", () => say("Connected."));
  socket.on("connect_error", () => say("Not connected: sign in again if this lasts."));
  socket.on("disconnect", () => say("Connection lost; reconnecting…"));

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

  socket.on("agent_state", (state) => {
    const badge = document.getElementById("agent-state");
    badge.textContent = state.state.replace("_", " ") + (state.reason ? ` (${state.reason})` : "");
    badge.dataset.state = state.state;
    document.getElementById("agent-since").textContent = state.changed_at ? `since ${new Date(state.changed_at).toLocaleTimeString()}` : "";
  });

  function list(title, items, render) {
    const box = crm.el("div", {class: "block"}, crm.el("h3", {}, title));
    if (!items || items.length === 0) { box.append(crm.el("p", {class: "muted"}, "None")); return box; }
    const ul = crm.el("ul");
    for (const item of items) ul.append(crm.el("li", {}, ...render(item)));
    box.append(ul);
    return box;
  }

  function dialLink(number) {
    const link = crm.el("a", {href: "#", class: "dial-link"}, number);
    return link;
  }

  function fillCustomer(card, pop) {
    const box = card.querySelector(".pop-customer");
    box.replaceChildren();
    const customer = pop.customer;
    if (!customer) {
      card.querySelector(".pop-title").textContent = pop.caller_name && pop.caller_name !== pop.number ? `${pop.caller_name} (unknown caller)` : "Unknown caller";
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
    box.append(
      crm.el("p", {class: "muted"}, [customer.kind, customer.language, (customer.tags || []).join(", ")].filter(Boolean).join(" · ")),
      list("Open tickets", customer.open_tickets, (t) => [`#${t.number} ${t.subject} `, crm.el("span", {class: "badge"}, t.status)]),
      list("Last calls", customer.last_calls, (c) => [`${new Date(c.at).toLocaleString()} · ${c.direction} · ${c.outcome}`, c.agent ? ` · agent ${c.agent}` : "", c.disposition ? ` · ${c.disposition}` : ""]),
      list("Last SMS", customer.last_sms, (m) => [`${m.direction}: ${m.body}`]),
      list("Notes", customer.notes, (n) => [n.body]),
    );
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
    const badge = entry.card.querySelector(".call-state");
    badge.textContent = state;
    badge.dataset.state = state;
    entry.card.dataset.state = state;
    showHoldControls(entry);
  }

  function cardFor(pop) {
    let entry = calls.get(pop.linkedid);
    if (entry) return entry;
    const card = document.getElementById("pop-template").content.firstElementChild.cloneNode(true);
    card.dataset.linkedid = pop.linkedid;
    entry = {card, state: "ringing", since: Date.now(), wrapupUntil: null};
    calls.set(pop.linkedid, entry);
    wire(card, pop.linkedid);
    document.getElementById("no-calls").classList.add("hidden");
    document.getElementById("calls").prepend(card);
    return entry;
  }

  function wire(card, linkedid) {
    const on = (selector, handler) => { const control = card.querySelector(selector); if (control) control.addEventListener("click", handler); };
    on(".hangup", () => send("hangup", {linkedid}, card));
    on(".hold", () => send("hold", {linkedid}, card));
    on(".resume", () => send("resume", {linkedid}, card));
    const target = card.querySelector(".transfer-target");
    on(".blind", () => send("transfer", {linkedid, target: target.value, kind: "blind"}, card));
    on(".attended", () => send("transfer", {linkedid, target: target.value, kind: "attended"}, card));
    card.querySelector(".wrapup").addEventListener("submit", (e) => {
      e.preventDefault();
      const form = e.target;
      socket.emit("wrap_up", {linkedid, disposition: form.disposition.value, notes: form.notes.value}, (result) => {
        ack(card)(result);
        if (result && result.ok) {
          setState(calls.get(linkedid), "wrapped up");
          form.classList.add("hidden");
          setTimeout(() => { card.remove(); calls.delete(linkedid); if (!calls.size) document.getElementById("no-calls").classList.remove("hidden"); }, 3000);
        }
      });
    });
    card.querySelector(".ticket").addEventListener("submit", async (e) => {
      e.preventDefault();
      const result = await crm.api("POST", `/api/calls/${encodeURIComponent(linkedid)}/ticket`, {subject: e.target.subject.value});
      card.querySelector(".pop-message").textContent = result.ok ? `Ticket #${result.data.number} created, linked to this call.` : `Not created: ${result.data.message}`;
      if (result.ok) e.target.reset();
    });
    card.querySelector(".create-customer").addEventListener("submit", async (e) => {
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
        fillCustomer(card, {customer: {id: result.data.id, name: result.data.name, open_tickets: [], last_calls: [], last_sms: [], notes: [], tags: []}});
      } else {
        card.querySelector(".pop-message").textContent = `Not created: ${result.data.message}`;
      }
    });
  }

  socket.on("pop", (pop) => {
    const entry = cardFor(pop);
    const card = entry.card;
    const number = card.querySelector(".pop-number");
    number.textContent = pop.number || "withheld";
    card.querySelector(".pop-queue").textContent = pop.queue || (pop.direction === "outbound" ? "outbound" : "—");
    card.querySelector(".pop-wait").textContent = pop.waited_seconds ?? 0;
    fillCustomer(card, pop);
    fillIvr(card, pop);
    if (!pop.resent) setState(entry, "ringing");
  });

  socket.on("call_state", (change) => {
    const entry = calls.get(change.linkedid);
    if (!entry) return;
    if (change.state === "up" && change.agent && change.agent !== me) {
      setState(entry, `answered by ${change.agent}`);
      setTimeout(() => { entry.card.remove(); calls.delete(change.linkedid); }, 2000);
      return;
    }
    if (change.state === "ended") {
      if (change.agent === me || entry.state === "up" || entry.state === "held") {
        setState(entry, "wrap-up");
        const form = entry.card.querySelector(".wrapup");
        form.classList.remove("hidden");
        entry.wrapupUntil = Date.now() + 1000 * (change.wrapup_seconds ?? wrapupDefault);
      } else {
        setState(entry, change.outcome === "answered" ? "answered elsewhere" : change.outcome);
        setTimeout(() => { entry.card.remove(); calls.delete(change.linkedid); }, 2000);
      }
      return;
    }
    setState(entry, change.state);
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

  document.getElementById("pause").addEventListener("click", () => send("pause", {reason: document.getElementById("pause-reason").value}));
  document.getElementById("unpause").addEventListener("click", () => send("unpause", {}));
  const queueBox = document.getElementById("queue-buttons");
  for (const queue of queues) {
    queueBox.append(
      crm.el("button", {onclick: () => send("queue_login", {queue})}, `Log in to ${queue}`),
      crm.el("button", {onclick: () => send("queue_logout", {queue})}, `Log out of ${queue}`),
    );
  }
  document.getElementById("dial-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send("dial", {number: document.getElementById("dial-number").value});
  });
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest("a.dial-link");
    if (!link) return;
    e.preventDefault();
    send("dial", {number: link.textContent});
  });
})();
