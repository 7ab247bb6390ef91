// Small DOM helpers for the dashboard. Text is always set as text, never as
// HTML, so nothing from the log is interpreted by the browser.

// h builds an element: h("a", {href: "#"}, "text", child, [more]).
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "hidden" || k === "disabled") el[k] = true;
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === "" || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// clear empties an element and returns it.
export function clear(el) {
  el.replaceChildren();
  return el;
}

// list accepts an array or an object holding the array under one of keys.
export function list(x, ...keys) {
  if (Array.isArray(x)) return x;
  for (const k of keys) if (x && Array.isArray(x[k])) return x[k];
  return [];
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

// fmtTime shows a timestamp in local time, with milliseconds.
export function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  const today = new Date().toDateString() === d.toDateString();
  const t = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return today ? t : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${t}`;
}

function span(ms) {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d`;
}

// ago: "12s ago".
export function ago(s) {
  const ms = Date.now() - Date.parse(s);
  if (isNaN(ms)) return "";
  return ms < 1000 ? "just now" : `${span(ms)} ago`;
}

// until: "in 3s", or "due" once passed.
export function until(s) {
  const ms = Date.parse(s) - Date.now();
  if (isNaN(ms)) return "";
  return ms <= 0 ? "due now" : `in ${span(ms)}`;
}

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state || "?");
}

// condBadge shows a condition; for Ready the badge reads Ready / Not ready.
export function condBadge(c, isReady) {
  let cls = "unknown";
  if (c.status === "True") cls = c.type === "Ready" ? "ok" : c.type === "Progressing" ? "info" : "bad";
  else if (c.status === "False" && c.type === "Ready") cls = "bad";
  const text = isReady ? (c.status === "True" ? "Ready" : c.status === "False" ? "Not ready" : "Unknown") : c.type;
  return h("span", { class: `badge cond ${cls}`, "data-condition": c.type, "data-status": c.status, title: [c.reason, c.message].filter(Boolean).join(": ") }, text);
}

// summaryOf is one line about an event: the server's summary when it sent
// one, else built from the payload.
export function summaryOf(e) {
  if (e.summary) return e.summary;
  const d = e.data || {};
  switch (e.type) {
    case "ManifestApplied":
      return `generation ${e.generation}: ${(d.manifest?.resources || []).length} resources` + (d.signature ? ", signed" : "");
    case "StatusChanged":
      return `${d.from || "(new)"} → ${d.to} (${d.trigger || ""})` + (d.error ? `: ${d.error}` : "") + (d.retryAfter ? `, retry after ${fmtTime(d.retryAfter)}` : "");
    case "ReconcileAttempted":
      return `attempt ${d.attempt} ${d.outcome}` + (d.changed ? ", changed" : "") + (d.error ? `: ${d.error}` : "");
    case "DriftDetected":
      return (d.differences || []).map((x) => x.field).join(", ") + ` differ (${d.policy || "correct"})`;
    case "DeviceRegistered":
      return `agent ${d.agentVersion || "?"}, kinds ${(d.kinds || []).join(", ")}`;
    case "DeviceDeregistered":
      return d.reason || "left the fleet";
    case "ManifestRejected":
      return `generation ${d.rejectedGeneration} rejected: ${d.reason}`;
  }
  return "";
}
