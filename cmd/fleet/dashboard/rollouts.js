// The rollout page: every rollout (#/), one rollout (#/ID) with its waves,
// gates and device counts, live; time travel (#/ID?t=RFC3339) shows it as
// it was then, from the log. It reads
//   GET /api/rollouts, /api/rollouts/{id}[?t=], and /api/stream (the
//   devices' server-sent events: every "changed" or "status" notice
//   fetches the rollout shown again, at most every 500 ms).
import { h, clear, fmtTime } from "/static/ui.js";

const app = document.getElementById("app");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");
let updates = 0;
let shown = null; // {refresh()}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
  return r.json();
}

function stateOf(r) {
  return h("span", { class: "rollout-state", "data-state": r.state }, r.state);
}

function listPage() {
  clear(crumbs).append(h("a", { href: "#/" }, "rollouts"));
  const refresh = async () => {
    let rs;
    try { rs = await getJSON("/api/rollouts"); } catch (e) { clear(app).append(h("p", { class: "error" }, String(e.message))); return; }
    const rows = rs.map((r) => h("tr", { "data-rollout": r.id },
      h("td", {}, h("a", { href: `#/${encodeURIComponent(r.id)}` }, r.id)),
      h("td", {}, stateOf(r)),
      h("td", {}, r.spec.selector),
      h("td", { class: "num" }, `${r.current + 1}/${r.waves.length}`),
      h("td", { class: "num" }, `${Object.keys(r.targeted || {}).length}/${r.spec.devices.length}`),
      h("td", {}, fmtTime(r.startedAt))));
    clear(app).append(h("h1", {}, "Rollouts"),
      rs.length === 0 ? h("p", { class: "muted", id: "no-rollouts" }, "No rollouts yet (fleet rollout start).") :
        h("table", { class: "rollouts" }, h("thead", {}, h("tr", {}, ["id", "state", "selector", "wave", "targeted", "started"].map((x) => h("th", {}, x)))),
          h("tbody", {}, rows)));
  };
  return { refresh };
}

function bar(g) {
  const n = Math.max(g.devices, 1);
  const part = (cls, k) => g[k] > 0 ? h("span", { class: cls, style: `width:${(100 * g[k]) / n}%`, title: `${g[k]} ${k}` }) : null;
  return h("div", { class: "wave-bar" }, part("passed", "passed"), part("failed", "failed"), part("waiting", "waiting"), part("offline", "offline"));
}

function rolloutPage(id, at) {
  clear(crumbs).append(h("a", { href: "#/" }, "rollouts"), " / ", h("span", {}, id));
  const refresh = async () => {
    let r;
    const q = at ? `?t=${encodeURIComponent(at)}` : "";
    try { r = await getJSON(`/api/rollouts/${encodeURIComponent(id)}${q}`); } catch (e) { clear(app).append(h("p", { class: "error", id: "rollout-error" }, String(e.message))); return; }
    const waves = r.waveGates.map((g) => h("tr", { "data-wave": g.wave, "data-state": g.state },
      h("td", { class: "num" }, g.wave), h("td", {}, g.size), h("td", {}, g.state),
      h("td", { class: "num" }, g.devices), h("td", { class: "num" }, g.targeted),
      h("td", { class: "num", "data-k": "passed" }, g.passed), h("td", { class: "num", "data-k": "failed" }, g.failed),
      h("td", { class: "num", "data-k": "waiting" }, g.waiting), h("td", { class: "num", "data-k": "offline" }, g.offline),
      h("td", {}, bar(g))));
    const travel = h("form", { class: "travel" },
      h("label", {}, "as of ", h("input", { id: "at", type: "text", placeholder: "RFC 3339, empty: now", value: at || "" })),
      h("button", { type: "submit" }, "show"));
    travel.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = document.getElementById("at").value.trim();
      location.hash = `#/${encodeURIComponent(id)}${v ? "?t=" + encodeURIComponent(v) : ""}`;
    });
    clear(app).append(...[
      h("h1", { id: "rollout", "data-state": r.state }, `Rollout ${r.id} `, stateOf(r)),
      r.asOf ? h("p", { class: "muted", id: "as-of" }, `as of ${fmtTime(r.asOf)} (time travel, from the log)`) : null,
      h("p", {}, `selector ${r.spec.selector} · ${r.spec.devices.length} devices · waves ${r.spec.waves.join(", ")} · on failure ${r.spec.onFailure}`),
      h("p", { class: "gate", id: "budget" }, `budget: ${r.budget}`),
      r.waitingOn ? h("p", { class: "gate", id: "waiting-on" }, `waiting on ${r.waitingOn}`) : null,
      r.reason ? h("p", { class: "gate", id: "reason" }, `reason: ${r.reason}`) : null,
      h("table", { class: "waves" },
        h("thead", {}, h("tr", {}, ["wave", "size", "state", "devices", "targeted", "passed", "failed", "waiting", "offline", ""].map((x) => h("th", {}, x)))),
        h("tbody", {}, waves)),
      travel].filter(Boolean)); // a plain append would show null as text
  };
  return { refresh };
}

let pending = null;
function scheduleRefresh() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; if (shown) shown.refresh(); }, 500);
}

function route() {
  const m = location.hash.match(/^#\/([A-Za-z0-9_-]{1,64})(?:\?t=(.*))?$/);
  shown = m ? rolloutPage(decodeURIComponent(m[1]), m[2] ? decodeURIComponent(m[2]) : "") : listPage();
  shown.refresh();
}

function connect() {
  if (!window.EventSource) { live.textContent = "polling"; setInterval(scheduleRefresh, 3000); return; }
  const es = new EventSource("/api/stream");
  const notice = () => {
    updates++;
    live.dataset.updates = String(updates);
    live.dataset.state = "live";
    live.textContent = "live";
    scheduleRefresh();
  };
  es.addEventListener("changed", notice);
  es.addEventListener("status", notice);
  es.onerror = () => { live.dataset.state = "reconnecting"; live.textContent = "reconnecting"; };
}

window.addEventListener("hashchange", route);
route();
connect();
