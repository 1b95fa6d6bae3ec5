// The SMS inbox and conversation pages: refreshed (htmx) when the server says a text came in or a status changed.
(() => {
  "use strict";
  const live = document.getElementById("sms-live");
  const socket = io("/agent", {transports: ["websocket", "polling"]});
  const target = () => document.getElementById("sms-thread") || document.getElementById("sms-list");
  // One refresh at a time; news arriving meanwhile asks for one more after it.
  let busy = false;
  let again = false;
  const refresh = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const element = target();
        if (!element || !window.htmx) return;
        await window.htmx.ajax("GET", element.dataset.refresh, {target: "#" + element.id, swap: "outerHTML"});
      } while (again);
    } finally {
      busy = false;
    }
  };
  socket.on("connect", () => { if (live) live.textContent = "Live."; });
  socket.on("connect_error", () => { if (live) live.textContent = "Not live: new texts show after a reload."; });
  socket.on("disconnect", () => { if (live) live.textContent = "Connection lost; reconnecting…"; });
  socket.on("sms_received", (event) => {
    const thread = document.getElementById("sms-thread");
    if (thread && thread.dataset.conversation !== event.conversation_id) return;
    refresh();
  });
  socket.on("sms_status", (event) => {
    const thread = document.getElementById("sms-thread");
    if (thread && thread.dataset.conversation === event.conversation_id) refresh();
  });
})();
document.addEventListener("htmx:afterRequest", (event) => {
  const form = event.target;
  if (!event.detail.successful || !(form instanceof HTMLFormElement)) return;
  if (form.id === "sms-reply-form") form.reset();
  if (form.id === "sms-close-form") window.location.reload();
});
