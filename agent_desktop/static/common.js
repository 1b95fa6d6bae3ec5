// Small helpers shared by the pages: DOM building that only ever sets text, and JSON calls with the CSRF header.
"use strict";
const crm = {
  csrf: document.querySelector('meta[name="csrf-token"]').content,
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("data-") || key.startsWith("aria-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },
  async api(method, url, body) {
    const response = await fetch(url, {
      method,
      headers: {"Content-Type": "application/json", "X-CSRF-Token": crm.csrf},
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await response.json(); } catch (e) { data = {message: response.statusText}; }
    return {ok: response.ok, status: response.status, data};
  },
  clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  },
};
