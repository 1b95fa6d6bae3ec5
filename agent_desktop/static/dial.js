// Click-to-dial from any page: a button or link with data-dial="<number>" rings the agent's own phone, then the
// number, through the /agent Socket.IO namespace (one connection per page, opened at the first click).
"use strict";
(() => {
  let socket = null;
  const status = () => document.getElementById("dial-status");
  const say = (text) => { const node = status(); if (node) node.textContent = text; };
  document.addEventListener("click", (event) => {
    const control = event.target.closest && event.target.closest("[data-dial]");
    if (!control) return;
    event.preventDefault();
    if (typeof io !== "function") { say("Calling needs the agent desktop's connection; reload the page."); return; }
    if (socket === null) socket = io("/agent", {transports: ["websocket", "polling"]});
    const number = control.dataset.dial;
    say(`Calling ${number}…`);
    socket.timeout(10000).emit("dial", {number}, (timedOut, result) => {
      if (timedOut) say("The phone system did not answer; try again.");
      else say(result && result.ok ? `Your phone rings; then ${number}.` : `Not dialled: ${result && result.error}`);
    });
  });
})();
