// The device page's timeline and its contradictions.
//
// Now, the timeline shows the newest events; travelling in time, it shows
// the events around the chosen moment (those just before and just after,
// the chosen one marked), so that one sees what changed there. An error
// that repeats (the same error of the same resource, retry after retry) is
// one row with its count and since when, not a row per attempt.
// contradictions lists what a device's read model says that cannot all be
// true at once, so the page marks it instead of showing it as fact.
import { h, clear, fmtTime, summaryOf } from "/static/ui.js";

export const NEWEST = 300; // events shown now
export const AROUND = 10; // events shown either side of the chosen moment

// errorKey is what makes two events the same repeating error: the same
// type, resource, outcome and error text (the attempt number aside).
export function errorKey(e) {
  const d = e.data || {};
  if (!d.error) return null;
  return [e.type, e.resource || "", d.outcome || d.to || "", d.error].join("\u0000");
}

// collapse folds each run of a repeating error (newest first, per resource
// and type: an event of the same resource and type without that error ends
// the run) into its newest row with count and since (the oldest's time).
export function collapse(evs) {
  const rows = [];
  const open = new Map();
  for (const e of evs) {
    const lane = (e.resource || "") + "\u0000" + e.type;
    const key = errorKey(e);
    const g = open.get(lane);
    if (key && g && g.key === key) {
      g.count++;
      g.since = e.at;
      continue;
    }
    const row = { e, key, count: 1, since: e.at };
    rows.push(row);
    if (key) open.set(lane, row);
    else open.delete(lane);
  }
  return rows;
}

// windowOf returns the events to show (newest first), the index of the
// chosen event in them (-1 now) and a caption.
export function windowOf(events, travel) {
  if (travel === null || travel === undefined) {
    const shown = events.slice(-NEWEST).reverse();
    return { shown, chosen: null, caption: `${events.length} events${events.length > NEWEST ? `, newest ${NEWEST}` : ""}` };
  }
  const t = Date.parse(travel);
  let i = -1;
  while (i + 1 < events.length && Date.parse(events[i + 1].at) <= t) i++;
  const from = Math.max(0, i - AROUND), to = Math.min(events.length, i + 1 + AROUND);
  const shown = events.slice(from, to).reverse();
  return { shown, chosen: i >= 0 ? events[i] : null,
    caption: `${events.length} events; around ${fmtTime(travel)}: ${i + 1 - from} up to it, ${to - i - 1} after` };
}

export function renderTimeline(page) {
  const limit = page.travel ? Date.parse(page.travel) : Infinity;
  const { shown, chosen, caption } = windowOf(page.events, page.travel);
  const rows = collapse(shown);
  clear(page.shell.timeline).append(
    h("h2", {}, "Timeline ", h("span", { class: "muted", id: "timeline-caption" }, `(${caption})`)),
    rows.length ? h("ol", { class: "timeline" }, ...rows.map(({ e, count, since }) => h("li", {
      class: `ev type-${e.type}` + (Date.parse(e.at) > limit ? " future" : "") + (e === chosen ? " chosen" : ""),
      "data-seq": String(e.seq ?? ""), "data-resource": e.resource || null,
      "data-repeats": count > 1 ? String(count) : null, "data-chosen": e === chosen ? "" : null,
    },
      h("time", { datetime: e.at, title: e.streamTime ? `stream time ${fmtTime(e.streamTime)}, sequence ${e.seq}` : "" }, fmtTime(e.at)),
      h("span", { class: "etype" }, e.type),
      e.resource ? h("span", { class: "eres" }, e.resource) : "",
      h("span", { class: "esum" }, summaryOf(e)),
      count > 1 ? h("span", { class: "repeat", title: "the same error, retry after retry" }, `repeats: ${count}× since ${fmtTime(since)}`) : "",
      e === chosen ? h("span", { class: "chosen-mark" }, "◀ this moment") : "",
    ))) : h("p", { class: "muted" }, "No events yet."),
  );
}

const FAR = 10 * 60 * 1000; // heartbeats this far past the last event are marked

// contradictions returns what d (the device now, or at the moment `at`)
// says that cannot all be true, each {kind, text}; events are the device's,
// sorted by time.
export function contradictions(d, events, at) {
  const out = [];
  const ready = (d.conditions || []).find((c) => c.type === "Ready");
  if (ready && ready.status === "True" && (d.observedGeneration ?? 0) < (d.generation ?? 0)) {
    out.push({ kind: "ready-old-generation",
      text: `Ready, but for generation ${d.observedGeneration ?? 0}: generation ${d.generation} is desired and not yet reported settled` });
  }
  if (!at && d.lastHeartbeat && d.lastSeen && Date.parse(d.lastHeartbeat) - Date.parse(d.lastSeen) > FAR) {
    const mins = Math.round((Date.parse(d.lastHeartbeat) - Date.parse(d.lastSeen)) / 60000);
    out.push({ kind: "heartbeat-after-events",
      text: `heartbeat at ${fmtTime(d.lastHeartbeat)}, but no event since ${fmtTime(d.lastSeen)} (${mins} min): the agent is alive; if it should have reported, look for parked events ('fleet doctor')` });
  }
  const limit = at ? Date.parse(at) : Infinity;
  for (const r of d.resources || []) {
    if ((r.state !== "Reconciling" && r.state !== "Pending") || (r.attempts ?? 0) > 0) continue;
    const tried = events.filter((e) => e.type === "ReconcileAttempted" && e.resource === r.id && Date.parse(e.at) <= limit &&
      (!r.since || Date.parse(e.at) >= Date.parse(r.since)));
    if (tried.length) {
      const last = tried[tried.length - 1];
      out.push({ kind: "attempts", resource: r.id,
        text: `${r.id}: ${r.state} with 0 attempts, but the log has ${summaryOf(last)} at ${fmtTime(last.at)}` });
    }
  }
  return out;
}

export function renderContradictions(page, d, at) {
  const box = page.shell.contra;
  const cs = contradictions(d, page.events, at);
  box.hidden = cs.length === 0;
  clear(box).append(h("b", {}, "This does not add up: "),
    h("ul", {}, ...cs.map((c) => h("li", { "data-contradiction": c.kind, "data-resource": c.resource || null }, c.text))));
}
