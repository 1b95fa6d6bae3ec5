// The SMS inbox and conversation pages: refreshed (htmx) when the server says a text came in or a status changed.
(() => {
  "use strict";
  const live = document.getElementById("sms-live");
  const socket = io("/agent", {transports: ["websocket", "polling"]});
  const refresh = () => {
    for (const id of ["sms-list", "sms-thread"]) {
      const element = document.getElementById(id);
      if (element && window.htmx) window.htmx.trigger(element, "sms-changed");
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
