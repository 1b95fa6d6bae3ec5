// What a refused htmx request says (the server answers one sentence as JSON), shown where the page expects it:
// the nearest [role=alert] of the form or section, else the page's status line.
"use strict";
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let text = `Not done (${xhr.status}).`;
  try { text = JSON.parse(xhr.responseText).message || text; } catch (e) { /* not JSON: keep the status */ }
  const origin = event.detail.elt;
  const scope = origin.closest("main") || document.body;
  const target = scope.querySelector('[role="alert"]') || document.querySelector('[role="status"]');
  if (target) target.textContent = text;
});
