// Customer 360: notes (editing and merging are htmx forms; click-to-dial is dial.js).
"use strict";
(() => {
  const root = document.getElementById("customer");
  const id = root.dataset.id;
  const say = (text) => { document.getElementById("customer-message").textContent = text; };
  const submit = (formId, url, body) => {
    const form = document.getElementById(formId);
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const result = await crm.api("POST", url, body(form));
      say(result.ok ? "Saved. Reload to see it in the timeline." : `Not saved: ${result.data.message}`);
    });
  };
  submit("add-note", `/api/customers/${encodeURIComponent(id)}/notes`, (f) => ({body: f.body.value}));
})();
