// The fleet dashboard: plain ES modules, no build step, everything served by
// `fleet server`. It reads the projection service's HTTP API:
//   GET /api/summary (a page of device summaries and the fleet's totals),
//   /api/devices/{id}, /api/devices/{id}/events,
//   /api/devices/{id}/drift, /api/devices/{id}/at?t=RFC3339 (time travel),
//   /api/stream (server-sent events: "changed" names the devices that
//   changed; the page fetches what it shows again).
// No page ever loads the whole fleet: the overview shows a page of
// summaries (search, filter, sort, pages), the device page one device.
import { h, clear, fmtTime, ago, until, stateBadge, condBadge, summaryOf, list } from "/static/ui.js";
import { renderTimeline, renderContradictions } from "/static/timeline.js";

const app = document.getElementById("app");
const crumbs = document.getElementById("crumbs");
const live = document.getElementById("live");

const STATES = ["Ready", "Reconciling", "Pending", "Failed"];

let view = null; // the page shown: {kind, refresh()}
let updates = 0; // live updates received (shown on the badge, read by tests)

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!r.ok) {
    const text = (await r.text()).trim();
    const err = new Error(`${path}: ${r.status} ${text}`);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

const PAGE = 100; // devices a page of the overview

// ---- routing ---------------------------------------------------------------

function route() {
  const m = location.hash.match(/^#\/devices\/([A-Za-z0-9_-]{1,64})$/);
  if (view && view.close) view.close();
  const q = location.hash.indexOf("?");
  view = m ? devicePage(decodeURIComponent(m[1])) : overviewPage(new URLSearchParams(q >= 0 ? location.hash.slice(q + 1) : ""));
  view.refresh();
}
window.addEventListener("hashchange", route);

// ---- live updates ------------------------------------------------------------

let refreshTimer = null;
let lastRefresh = 0;
// scheduleRefresh fetches the page again soon: at most one fetch a second
// however many notices arrive.
function scheduleRefresh() {
  if (refreshTimer) return;
  const wait = Math.max(250, 1000 - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    lastRefresh = Date.now();
    if (view) view.refresh(true);
  }, wait);
}

let pollTimer = null;
function connectStream() {
  if (!window.EventSource) {
    setLive("polling");
    pollTimer = setInterval(scheduleRefresh, 3000);
    return;
  }
  const es = new EventSource("/api/stream");
  // "changed": {devices: [ids]} or {all: true}, a notice, never a device.
  const onChanged = (ev) => {
    let n = null;
    try { n = JSON.parse(ev.data); } catch (e) { /* not JSON: refetch */ }
    updates++;
    live.dataset.updates = String(updates);
    setLive("live");
    if (view && view.onChanged && n) view.onChanged(n.all ? null : new Set(n.devices || []));
    else scheduleRefresh();
  };
  es.onopen = () => {
    setLive("live");
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
  };
  es.addEventListener("changed", onChanged);
  es.onerror = () => {
    setLive("reconnecting");
    if (!pollTimer) pollTimer = setInterval(scheduleRefresh, 5000);
  };
}

function setLive(state) {
  live.dataset.state = state;
  live.textContent = state;
}

// Relative times ("12s ago", "in 3s") tick without a refetch.
setInterval(() => {
  for (const el of document.querySelectorAll("[data-ago]")) el.textContent = ago(el.dataset.ago);
  for (const el of document.querySelectorAll("[data-until]")) el.textContent = until(el.dataset.until);
}, 1000);

// ---- overview ----------------------------------------------------------------

const SORTS = {
  id: { label: "Device id", cmp: (a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : 0) },
  problems: { label: "Problems first", cmp: (a, b) => problemRank(b) - problemRank(a) || SORTS.id.cmp(a, b) },
  seen: { label: "Last seen (oldest first)", cmp: (a, b) => (Date.parse(a.lastSeen || 0) || 0) - (Date.parse(b.lastSeen || 0) || 0) || SORTS.id.cmp(a, b) },
};

function problemRank(d) {
  let r = 0;
  if (condition(d, "Degraded")?.status === "True") r += 4;
  if (condition(d, "Stale")?.status === "True") r += 2;
  if (condition(d, "Ready")?.status !== "True") r += 1;
  return r;
}

// The overview keeps its query in the address (#/?q=…&status=…&sort=…), so
// a filtered list can be bookmarked and survives a reload. It shows one
// page of summaries (conditions and counts, never resources).
function overviewPage(params) {
  setCrumbs([]);
  const page = {
    kind: "overview",
    q: params.get("q") || "",
    status: params.get("status") || "",
    sort: SORTS[params.get("sort")] ? params.get("sort") : "id",
    cursors: [""], // the cursor of each page seen, for Previous
    index: 0,
    rows: new Map(), // id -> summary JSON, to flash changed rows
    async refresh(isUpdate) {
      const qs = new URLSearchParams({ limit: String(PAGE) });
      if (page.cursors[page.index]) qs.set("after", page.cursors[page.index]);
      if (page.q) qs.set("q", page.q);
      if (page.status) qs.set("status", page.status);
      let p;
      try {
        p = await getJSON(`/api/summary?${qs}`);
      } catch (e) {
        return showError(e);
      }
      if (view !== page) return;
      const changed = new Set();
      const next = new Map();
      for (const d of list(p, "devices")) {
        const j = JSON.stringify(d);
        if (isUpdate && page.rows.has(d.device) && page.rows.get(d.device) !== j) changed.add(d.device);
        next.set(d.device, j);
      }
      page.rows = next;
      page.data = p;
      renderOverview(page, changed);
    },
    // a notice: fetch the page again (a new device may land on any page,
    // and the totals count every device)
    onChanged() {
      scheduleRefresh();
    },
  };
  return page;
}

function renderOverview(page, changed) {
  const p = page.data || {};
  const fleet = p.fleet || { devices: 0, ready: 0, degraded: 0, stale: 0, states: {} };
  const counts = fleet.states || {};
  const devices = [...list(p, "devices")].sort(SORTS[page.sort].cmp);

  const summary = h("section", { class: "summary", id: "summary" },
    h("div", { class: "stat" }, h("b", { "data-testid": "device-count" }, String(fleet.devices)), " devices"),
    h("div", { class: "stat ok" }, h("b", {}, String(fleet.ready)), " Ready"),
    h("div", { class: "stat bad" }, h("b", {}, String(fleet.degraded)), " degraded"),
    h("div", { class: "stat warn" }, h("b", {}, String(fleet.stale)), " stale"),
    h("div", { class: "states", "aria-label": "resources by state" },
      ...STATES.map((s) => h("span", { class: `count state-${s}`, "data-state": s }, `${s} `, h("b", {}, String(counts[s] || 0))))),
    // a partitioned read side (fleet project --front): workers that did not answer
    h("div", { class: "banner error", role: "alert", id: "missing-partitions", hidden: list(p, "missingPartitions").length ? null : "" },
      `Partition(s) ${list(p, "missingPartitions").join(", ")} of the read side did not answer: their devices are not shown or counted.`),
  );

  if (!page.controls) page.controls = overviewControls(page);
  let body;
  if (fleet.devices === 0) {
    body = h("p", { class: "muted empty" }, "No devices yet. Start an agent (fleet agent --device pi-01 …) and apply a manifest (fleet apply -f … --device pi-01).");
  } else if (devices.length === 0) {
    body = h("p", { class: "muted empty", id: "no-match" }, "No device matches.");
  } else {
    body = h("table", { class: "devices", id: "devices" },
      h("thead", {}, h("tr", {}, ...["Device", "Ready", "Conditions", "Generation", "Resources", "Last seen"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...devices.map((d) => deviceRow(d, changed.has(d.device)))));
  }
  const first = page.index * PAGE;
  const pager = h("nav", { class: "pager", id: "pager" },
    h("button", { type: "button", class: "btn", id: "page-prev", disabled: page.index === 0 ? "" : null,
      onclick: () => { page.index--; page.refresh(); } }, "Previous"),
    h("span", { class: "muted", id: "page-info" }, p.total ? `${first + 1}–${first + devices.length} of ${p.total}` : ""),
    h("button", { type: "button", class: "btn", id: "page-next", disabled: p.next ? null : "",
      onclick: () => { page.cursors[page.index + 1] = p.next; page.index++; page.refresh(); } }, "Next"));
  // the controls stay in place (and keep the focus) while the rest is redrawn
  if (page.controls.parentNode !== app) clear(app).append(summary, page.controls, body, pager);
  else {
    for (const el of [...app.children]) if (el !== page.controls) el.remove();
    app.prepend(summary);
    app.append(body, pager);
  }
}

function overviewControls(page) {
  const search = h("input", { type: "search", id: "device-search", placeholder: "Search id or label (site=…)", value: page.q, "aria-label": "search devices" });
  const status = h("select", { id: "device-status", "aria-label": "filter by status" },
    ...[["", "All"], ["notready", "Not ready"], ["degraded", "Degraded"], ["stale", "Stale"], ["progressing", "Rolling out"], ["ready", "Ready"]]
      .map(([v, t]) => h("option", { value: v }, t)));
  const sort = h("select", { id: "device-sort", "aria-label": "sort devices" },
    ...Object.entries(SORTS).map(([k, s]) => h("option", { value: k }, s.label)));
  status.value = page.status;
  sort.value = page.sort;
  const apply = () => {
    page.q = search.value.trim();
    page.status = status.value;
    page.sort = sort.value;
    page.cursors = [""];
    page.index = 0;
    const qs = new URLSearchParams();
    if (page.q) qs.set("q", page.q);
    if (page.status) qs.set("status", page.status);
    if (page.sort !== "id") qs.set("sort", page.sort);
    history.replaceState(null, "", qs.toString() ? `#/?${qs}` : "#/");
    page.refresh();
  };
  let typing = null;
  search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(apply, 200); });
  status.addEventListener("change", apply);
  sort.addEventListener("change", apply);
  return h("section", { class: "controls", id: "controls" }, search, status, sort,
    h("span", { class: "muted small" }, "sorted within the page"));
}

function condition(d, type) {
  return (d.conditions || []).find((c) => c.type === type);
}

function deviceRow(d, changed) {
  const readyCond = condition(d, "Ready");
  const conds = (d.conditions || []).filter((c) => c.type !== "Ready" && c.status === "True");
  const rc = d.states || {};
  const href = `#/devices/${encodeURIComponent(d.device)}`;
  return h("tr", { "data-device": d.device, class: changed ? "changed" : "" },
    h("td", { "data-label": "Device" }, h("a", { href, class: "device-link" }, d.device), labels(d.labels)),
    h("td", { "data-label": "Ready" }, condBadge(readyCond || { type: "Ready", status: "Unknown" }, true)),
    h("td", { "data-label": "Conditions" }, conds.length ? conds.map((c) => condBadge(c)) : h("span", { class: "muted" }, "—")),
    h("td", { "data-label": "Generation", class: "gen", title: "observed / desired generation" },
      `${d.observedGeneration ?? 0} / ${d.generation ?? 0}`,
      (d.observedGeneration ?? 0) < (d.generation ?? 0) ? h("span", { class: "pill warn" }, "rolling out") : ""),
    h("td", { "data-label": "Resources", class: "rescounts" }, h("div", { class: "counts" },
      ...STATES.filter((s) => rc[s]).map((s) => h("span", { class: `count state-${s}`, title: s }, `${rc[s]} ${s}`)))),
    h("td", { "data-label": "Last seen" }, d.lastSeen ? h("span", { "data-ago": d.lastSeen, title: fmtTime(d.lastSeen) }, ago(d.lastSeen)) : h("span", { class: "muted" }, "never")),
  );
}

function labels(l) {
  const keys = Object.keys(l || {}).sort();
  if (!keys.length) return "";
  return h("div", { class: "labels" }, ...keys.map((k) => h("span", { class: "label" }, `${k}=${l[k]}`)));
}

// ---- device page ---------------------------------------------------------------

function devicePage(id) {
  setCrumbs([id]);
  const enc = encodeURIComponent(id);
  const page = {
    kind: "device",
    id,
    events: [], // sorted by at, the slider's stops
    travel: null, // the `at` string shown, or null for now
    travelSeq: 0,
    onChanged(ids) {
      if (!ids || ids.has(id)) scheduleRefresh();
    },
    async refresh(isUpdate) {
      let dev, evs, drift;
      try {
        [dev, evs, drift] = await Promise.all([
          getJSON(`/api/devices/${enc}`),
          loadEvents(page, enc),
          getJSON(`/api/devices/${enc}/drift`).catch(() => []),
        ]);
      } catch (e) {
        return showError(e, e.status === 404 ? `No device ${id} in the fleet.` : null);
      }
      if (view !== page) return;
      page.device = dev;
      page.drift = list(drift, "resources", "drift");
      page.events = evs;
      if (!isUpdate || !page.shell) renderDevice(page);
      else updateDevice(page);
      if (page.travel === null) await showNow(page);
    },
  };
  return page;
}

// loadEvents fetches the device's events not yet seen (pages of 1,000 from
// the last sequence seen on), keeps the newest MAX_EVENTS, and returns them
// sorted by event time: the timeline and the slider's stops.
const MAX_EVENTS = 20000;
async function loadEvents(page, enc) {
  page.raw = page.raw || [];
  page.seen = page.seen || new Set(); // sequences held: overlapping refreshes add each event once
  for (let i = 0; i < 50; i++) {
    const from = page.nextSeq || 0;
    let batch;
    try {
      batch = list(await getJSON(`/api/devices/${enc}/events?from=${from}&limit=1000`), "events");
    } catch (e) {
      break;
    }
    for (const e of batch) {
      if (page.seen.has(e.seq)) continue;
      page.seen.add(e.seq);
      page.raw.push(e);
    }
    if (batch.length) page.nextSeq = Math.max(from, ...batch.map((e) => e.seq || 0)) + 1;
    if (batch.length < 1000) break;
  }
  if (page.raw.length > MAX_EVENTS) {
    for (const e of page.raw.slice(0, page.raw.length - MAX_EVENTS)) page.seen.delete(e.seq);
    page.raw = page.raw.slice(-MAX_EVENTS);
  }
  return page.raw.filter((e) => e.at).sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || (a.seq || 0) - (b.seq || 0));
}

function renderDevice(page) {
  const s = {};
  page.shell = s;
  s.head = h("section", { class: "device-head", id: "device-head" });
  s.slider = h("input", { type: "range", id: "travel", min: "0", max: "0", value: "0", step: "1", "aria-label": "time travel" });
  s.picker = h("input", { type: "datetime-local", id: "travel-at", step: "1", "aria-label": "show the device at this time" });
  s.when = h("span", { id: "travel-when", class: "when" }, "now");
  s.liveBtn = h("button", { type: "button", id: "travel-live", class: "btn", disabled: "" }, "Back to now");
  s.travel = h("section", { class: "travel card", id: "time-travel" },
    h("h2", {}, "Time travel"),
    h("div", { class: "travel-row" }, s.slider, s.liveBtn),
    h("div", { class: "travel-row small" }, s.when, h("label", { class: "muted" }, "or pick a moment ", s.picker)));
  s.banner = h("div", { class: "banner", id: "travel-banner", hidden: "" });
  s.contra = h("div", { class: "banner warn", id: "contradictions", hidden: "" });
  s.resources = h("section", { class: "card", id: "resources" });
  s.why = h("section", { class: "card", id: "why" });
  s.drift = h("section", { class: "card", id: "drift" });
  s.timeline = h("section", { class: "card", id: "timeline" });
  clear(app).append(s.head, s.travel, s.banner, s.contra, h("div", { class: "grid" }, s.resources, s.why), h("div", { class: "grid" }, s.timeline, s.drift));

  s.slider.addEventListener("input", () => {
    const i = Number(s.slider.value);
    if (i >= page.events.length) return goNow(page);
    travelTo(page, page.events[i].at, i);
  });
  s.liveBtn.addEventListener("click", () => goNow(page));
  s.picker.addEventListener("change", () => {
    if (!s.picker.value) return goNow(page);
    const t = new Date(s.picker.value); // local time
    if (isNaN(t)) return;
    let i = 0;
    while (i < page.events.length && Date.parse(page.events[i].at) <= t.getTime()) i++;
    s.slider.value = String(i - 1 < 0 ? 0 : i - 1);
    travelTo(page, t.toISOString(), i - 1);
  });
  updateDevice(page);
}

function updateDevice(page) {
  const s = page.shell;
  const n = page.events.length;
  s.slider.max = String(n);
  s.slider.disabled = n === 0;
  if (page.travel === null) s.slider.value = String(n);
  renderTimeline(page);
  renderDrift(page);
}

function goNow(page) {
  page.travel = null;
  page.travelSeq++;
  const s = page.shell;
  s.slider.value = s.slider.max;
  s.picker.value = "";
  s.liveBtn.disabled = true;
  s.banner.hidden = true;
  app.classList.remove("past");
  showNow(page);
  renderTimeline(page);
  renderDrift(page);
}

async function showNow(page) {
  const s = page.shell;
  s.when.textContent = "now (live)";
  renderHead(page, page.device);
  renderResources(page, page.device, false);
  renderContradictions(page, page.device, null);
  await renderWhy(page, page.device, false);
}

let travelTimer = null;
function travelTo(page, at, index) {
  const s = page.shell;
  page.travel = at;
  s.liveBtn.disabled = false;
  s.when.textContent = `${fmtTime(at)} · event ${index + 1} of ${page.events.length}`;
  clearTimeout(travelTimer);
  travelTimer = setTimeout(async () => {
    const seq = ++page.travelSeq;
    let dev;
    try {
      dev = await getJSON(`/api/devices/${encodeURIComponent(page.id)}/at?t=${encodeURIComponent(at)}`);
    } catch (e) {
      if (e.status === 404) dev = { device: page.id, generation: 0, observedGeneration: 0, conditions: [], resources: [] };
      else { s.banner.hidden = false; s.banner.textContent = `Time travel failed: ${e.message}`; return; }
    }
    if (seq !== page.travelSeq || view !== page) return;
    app.classList.add("past");
    s.banner.hidden = false;
    s.banner.dataset.at = at;
    clear(s.banner).append(h("b", {}, "As it was at " + fmtTime(at)), ` — generation ${dev.generation ?? 0}, observed ${dev.observedGeneration ?? 0}. `,
      h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); goNow(page); } }, "Back to now"));
    renderHead(page, dev);
    renderResources(page, dev, true);
    renderContradictions(page, dev, at);
    await renderWhy(page, dev, true);
    renderTimeline(page);
    renderDrift(page);
  }, 120);
}

function renderHead(page, d) {
  const s = page.shell;
  clear(s.head).append(
    h("h1", {}, d.device || page.id, " ", condBadge(condition(d, "Ready") || { type: "Ready", status: "Unknown" }, true)),
    labels(d.labels),
    h("p", { class: "gen" }, `generation ${d.generation ?? 0}, observed ${d.observedGeneration ?? 0}`,
      // the last event and the last heartbeat apart: a quiet device's last event may be old beside a fresh heartbeat
      h("span", { class: "muted", id: "last-event" }, " · last event ",
        d.lastSeen ? h("span", { "data-ago": d.lastSeen, title: fmtTime(d.lastSeen) }, ago(d.lastSeen)) : "never"),
      h("span", { class: "muted", id: "last-heartbeat" }, " · last heartbeat ",
        d.lastHeartbeat ? h("span", { "data-ago": d.lastHeartbeat, title: fmtTime(d.lastHeartbeat) }, ago(d.lastHeartbeat)) : "none within the TTL")),
    // the rollouts matching the device (GET /api/devices/{id} carries them now, not in time travel)
    ...(d.rollouts || []).map((r) => h("p", { class: "hold", "data-rollout": r.rollout, "data-held": String(!!r.held) },
      r.held ? "held by rollout " : "in rollout ", h("a", { href: `/static/rollouts.html#/${encodeURIComponent(r.rollout)}` }, r.rollout),
      ` (${r.state}): ${r.reason}`)),
    h("ul", { class: "conditions" }, ...(d.conditions || []).map((c) =>
      h("li", { "data-condition": c.type }, condBadge(c, c.type === "Ready"), " ", h("span", { class: "muted" }, c.message || c.reason || "")))),
  );
}

function renderResources(page, d, past) {
  const rs = d.resources || [];
  const rows = rs.map((r) => h("tr", { "data-resource": r.id, "data-state": r.state },
    h("td", { "data-label": "Resource" }, h("b", {}, r.id)),
    h("td", { "data-label": "Kind" }, r.kind || ""),
    h("td", { "data-label": "State" }, stateBadge(r.state)),
    h("td", { "data-label": "Since" }, r.since ? h("span", past ? { title: fmtTime(r.since) } : { "data-ago": r.since, title: fmtTime(r.since) }, past ? fmtTime(r.since) : ago(r.since)) : ""),
    h("td", { "data-label": "Attempts", class: "num" }, String(r.attempts ?? 0)),
    h("td", { "data-label": "Error", class: "err" }, r.error || "", healthNote(r)),
    h("td", { "data-label": "Next retry" }, r.retryAfter ? h("span", past ? { title: fmtTime(r.retryAfter) } : { "data-until": r.retryAfter, title: fmtTime(r.retryAfter) }, past ? fmtTime(r.retryAfter) : until(r.retryAfter)) : ""),
  ));
  clear(page.shell.resources).append(
    h("h2", {}, "Resources ", h("span", { class: "muted" }, `(${rs.length})`)),
    rs.length ? h("table", { class: "resources" },
      h("thead", {}, h("tr", {}, ...["Resource", "Kind", "State", "Since", "Attempts", "Error", "Next retry"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...rows)) : h("p", { class: "muted" }, "No resources."),
  );
}

// healthNote says that an error repeats and what the resource's health
// says (the probe that failed, the restarts, the next restart).
function healthNote(r) {
  const parts = [];
  if (r.repeats > 1 && r.errorSince) parts.push(`repeats: ${r.repeats} times since ${fmtTime(r.errorSince)}`);
  const hl = r.health;
  if (hl) {
    if (hl.probe === "kind") parts.push(`its own health: ${hl.reason}`);
    else if (hl.probe) parts.push(`${hl.probe} probe failed ${hl.failures || 0}× (${hl.reason})`);
    if (hl.restarts) parts.push(`${hl.restarts} restarts`);
    if (hl.nextRestart) parts.push(`next restart ${fmtTime(hl.nextRestart)}`);
  }
  return parts.length ? h("div", { class: "muted", "data-health": "" }, parts.join(" · ")) : "";
}

// The "why" of every resource that is not Ready: the projection service's
// explain answer when it has one, else derived from the device and its events.
async function renderWhy(page, d, past) {
  const notReady = (d.resources || []).filter((r) => r.state !== "Ready");
  const box = page.shell.why;
  const items = await Promise.all(notReady.map(async (r) => {
    let why = null;
    if (!past) {
      try {
        const x = await getJSON(`/api/explain/${encodeURIComponent(page.id)}/${encodeURIComponent(r.id)}`);
        if (Array.isArray(x.why) && x.why.length) why = x.why;
      } catch (e) { /* not offered: derive it */ }
    }
    if (!why) why = deriveWhy(page, d, r, past);
    return h("li", { "data-resource": r.id }, h("b", {}, r.id), " ", stateBadge(r.state), h("ul", { class: "why" }, ...why.map((w) => h("li", {}, w))));
  }));
  if (view !== page) return;
  clear(box).append(h("h2", {}, "Why not Ready"),
    items.length ? h("ul", { class: "whys" }, ...items) : h("p", { class: "muted ok-text" }, "Every resource is Ready."));
}

function deriveWhy(page, d, r, past) {
  const why = [];
  const limit = past && page.travel ? Date.parse(page.travel) : Infinity;
  const evs = page.events.filter((e) => Date.parse(e.at) <= limit);
  const manifest = [...evs].reverse().find((e) => e.type === "ManifestApplied");
  if (manifest) why.push(`desired by manifest generation ${manifest.generation}, applied by ${manifest.actor || "?"} at ${fmtTime(manifest.at)}`);
  else why.push("no manifest has been applied to this device");
  why.push(`${r.state} since ${fmtTime(r.since)}`);
  if (r.error) why.push(`error: ${r.error}`);
  const attempts = evs.filter((e) => e.type === "ReconcileAttempted" && e.resource === r.id).slice(-3);
  if (attempts.length) why.push(`${r.attempts || attempts.length} attempts; last: ` + attempts.map((e) => `${summaryOf(e)} at ${fmtTime(e.at)}`).join("; "));
  if (r.retryAfter) why.push(`next retry not before ${fmtTime(r.retryAfter)}`);
  else if (r.state === "Pending" || r.state === "Reconciling") why.push("the agent is working on it");
  return why;
}

function renderDrift(page) {
  const limit = page.travel ? Date.parse(page.travel) : Infinity;
  const rs = (page.drift || []).map((r) => ({ ...r, drifts: (r.drifts || []).filter((x) => Date.parse(x.at) <= limit) })).filter((r) => r.drifts.length);
  clear(page.shell.drift).append(
    h("h2", {}, "Drift history"),
    rs.length ? h("ul", { class: "drifts" }, ...rs.map((r) => h("li", { "data-resource": r.resource },
      h("b", {}, r.resource), " ", h("span", { class: "muted" }, `${r.count} drifts, ${r.corrected} corrected, ${r.open} open`),
      h("ol", {}, ...r.drifts.slice(-10).reverse().map((x) => {
        const fixed = x.correctedAt && Date.parse(x.correctedAt) <= limit;
        return h("li", { class: fixed ? "fixed" : "open" },
          h("time", { datetime: x.at }, fmtTime(x.at)), " ",
          (x.differences || []).map((df) => `${df.field}: expected ${df.expected}, observed ${df.observed}`).join("; ") || "differs",
          " — ", fixed ? h("span", { class: "ok-text" }, `corrected ${fmtTime(x.correctedAt)}${x.correctedBy ? " (" + x.correctedBy + ")" : ""}`)
            : h("span", { class: "bad-text" }, x.policy === "report" ? "reported, left alone" : "open"));
      }))))) : h("p", { class: "muted" }, "No drift recorded."),
  );
}

// ---- chrome ---------------------------------------------------------------------

function setCrumbs(parts) {
  clear(crumbs).append(h("a", { href: "#/" }, "devices"), ...parts.flatMap((p) => [" / ", h("span", {}, p)]));
}

function showError(e, message) {
  clear(app).append(h("div", { class: "banner error", role: "alert" }, message || `Could not load: ${e.message}`),
    h("p", {}, h("a", { href: "#/" }, "Back to the fleet")));
}

route();
connectStream();
