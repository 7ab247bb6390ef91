package agent

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Probe state survives an agent restart: each applied resource's health
// view (the probes' runs of passes and failures and what they judged, the
// startup probe passed or not, the restart backoff and when it last
// restarted, a restart due, the kind's recent restart counts) is kept in
// the agent's store under health/<id>, in the step's txn, whenever it
// changed in a way that matters: a steady healthy resource writes nothing
// (passes in a row are kept only up to the success threshold, the output
// only while failing, the kind's restart samples only while they differ).
// A restarted agent takes the view back for a resource whose spec (digest)
// is the one it was kept for; anything else starts over.

var prefixHealth = []byte("health/")

func healthKey(id string) []byte { return append(append([]byte{}, prefixHealth...), id...) }

// keptHealth is a health view as stored.
type keptHealth struct {
	Digest       string               `json:"digest"`
	Started      bool                 `json:"started"`
	Tracks       map[string]keptTrack `json:"tracks,omitempty"` // by role
	Restarts     int                  `json:"restarts,omitempty"`
	NextRestart  time.Time            `json:"nextRestart,omitzero"`
	RestartWhy   string               `json:"restartWhy,omitempty"` // the role that asked
	BackoffDelay time.Duration        `json:"backoffDelay,omitempty"`
	BackoffLast  time.Time            `json:"backoffLast,omitzero"` // when the last restart was due (reset after resetAfter healthy)
	KindSamples  []keptSample         `json:"kindSamples,omitempty"`
	CrashLooping bool                 `json:"crashLooping,omitempty"`
}

type keptTrack struct {
	Succ    int    `json:"succ,omitempty"`
	Fail    int    `json:"fail,omitempty"`
	Total   int    `json:"total,omitempty"`
	Passing bool   `json:"passing"`
	Output  string `json:"output,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

type keptSample struct {
	At    time.Time `json:"at"`
	Count int       `json:"count"`
}

// keep is h as stored.
func (h *health) keep() keptHealth {
	k := keptHealth{Digest: h.digest, Started: h.started, Restarts: h.restarts, NextRestart: h.nextRestart,
		BackoffDelay: h.backoff.delay, BackoffLast: h.backoff.last, CrashLooping: h.crashLooping}
	if h.restartWhy != nil {
		k.RestartWhy = h.restartWhy.role
	}
	for _, t := range []*probeTrack{h.startup, h.readiness, h.liveness, h.kind} {
		if t == nil {
			continue
		}
		kt := keptTrack{Succ: min(t.succ, t.timing.SuccessThreshold), Fail: t.fail, Total: t.total, Passing: t.passing}
		if !t.passing || t.fail > 0 {
			kt.Output, kt.Reason = truncate(t.output, maxProbeOutput), t.reason
		}
		if k.Tracks == nil {
			k.Tracks = map[string]keptTrack{}
		}
		k.Tracks[t.role] = kt
	}
	for _, s := range h.kindRestarts {
		if s.count != h.kindRestarts[0].count || h.crashLooping {
			for _, s := range h.kindRestarts {
				k.KindSamples = append(k.KindSamples, keptSample{At: s.at, Count: s.count})
			}
			break
		}
	}
	return k
}

// restore takes a stored view back into h (built afresh for the same spec).
func (h *health) restore(k keptHealth) {
	h.started, h.restarts, h.nextRestart, h.crashLooping = k.Started, k.Restarts, k.NextRestart, k.CrashLooping
	h.backoff.delay, h.backoff.last = k.BackoffDelay, k.BackoffLast
	for _, t := range []*probeTrack{h.startup, h.readiness, h.liveness, h.kind} {
		if t == nil {
			continue
		}
		kt, ok := k.Tracks[t.role]
		if !ok {
			continue
		}
		t.succ, t.fail, t.total, t.passing, t.output, t.reason = kt.Succ, kt.Fail, kt.Total, kt.Passing, kt.Output, kt.Reason
		if t.role == k.RestartWhy {
			h.restartWhy = t
		}
	}
	if h.startup != nil && h.started {
		h.startup.passing = true
	}
	h.kindRestarts = nil
	for _, s := range k.KindSamples {
		h.kindRestarts = append(h.kindRestarts, restartSample{at: s.At, count: s.Count})
	}
}

// loadHealth reads the stored health views by resource id. A damaged one
// is skipped (its probes start over), as is everything when the store
// cannot be read: health is not worth failing a start for.
func loadHealth(a *Agent) map[string][]byte {
	out := map[string][]byte{}
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: prefixHealth, UpperBound: prefixEnd(prefixHealth)})
	if err != nil {
		return out
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key()[len(prefixHealth):])] = append([]byte(nil), it.Value()...)
	}
	return out
}

// restoreHealth takes x's stored view back when it was kept for x's spec.
func (l *loop) restoreHealth(x *resource, b []byte) {
	if x.health == nil || b == nil {
		return
	}
	var k keptHealth
	if err := json.Unmarshal(b, &k); err != nil {
		l.a.log.Warn("health: stored probe state unreadable; probes start over", "resource", x.rec.ID, "err", err)
		return
	}
	if k.Digest != x.health.digest {
		return
	}
	x.health.restore(k)
	x.healthKept = b
}

// keepHealth writes x's health view in t when it changed since it was last
// written (nothing for a steady resource), and removes it when x has none.
func (l *loop) keepHealth(t *txn, x *resource) error {
	if x.health == nil {
		if x.healthKept != nil {
			x.healthKept = nil
			t.writes++
			return t.b.Delete(healthKey(x.rec.ID), nil)
		}
		return nil
	}
	b, err := json.Marshal(x.health.keep())
	if err != nil {
		return err
	}
	if bytes.Equal(b, x.healthKept) {
		return nil
	}
	x.healthKept = b
	t.writes++
	return t.b.Set(healthKey(x.rec.ID), b, nil)
}

// forgetHealth removes a removed resource's stored view.
func (l *loop) forgetHealth(t *txn, id string) error {
	t.writes++
	return t.b.Delete(healthKey(id), nil)
}
