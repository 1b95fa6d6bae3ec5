// A ticket's page, live: when someone else changes the ticket (its assignee and watchers are told), the page reads
// it again — unless a message is being written here, then it says so and waits for a click.
(() => {
  "use strict";
  const live = document.getElementById("ticket-live");
  const current = () => document.getElementById("ticket");
  const socket = io("/agent", {transports: ["websocket", "polling"]});
  // One refresh at a time; news arriving meanwhile asks for one more after it.
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const element = current();
        if (!element || !window.htmx) return;
        await window.htmx.ajax("GET", element.dataset.refresh, {target: "#ticket", swap: "outerHTML"});
      } while (again);
    } finally {
      busy = false;
    }
  };
  const writing = () => {
    const box = document.querySelector('#ticket-message textarea[name="body"]');
    return Boolean(box && box.value.trim());
  };
  socket.on("connect", () => { if (live && !live.dataset.changed) live.textContent = "Live."; });
  socket.on("connect_error", () => { if (live) live.textContent = "Not live: changes by others show after a reload."; });
  socket.on("ticket_changed", (event) => {
    const element = current();
    if (!element || element.dataset.ticketId !== event.ticket_id) return;
    if (event.change === "merged" && event.merged_into_id) {
      window.location.assign(`/tickets/${encodeURIComponent(event.merged_into_id)}?merged=${event.ticket_number}`);
      return;
    }
    live.dataset.changed = "1";
    live.textContent = `Changed by a colleague just now: ${event.change}.`;
    if (!writing()) { refresh(); return; }
    const show = crmButton("Show the changes");
    show.addEventListener("click", () => { show.remove(); refresh(); });
    live.append(" ", show);
  });
  function crmButton(text) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = text;
    return button;
  }
})();
