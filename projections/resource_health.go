package projections

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// CondCrashLooping is listed once a resource of the device crash-loops: its
// kind restarts it again and again (systemd Restart=always, podman
// --restart), or the agent restarted it for failing liveness at least
// crashLoopRestarts times. Its message names the restarts and the next one.
const CondCrashLooping = "CrashLooping"

// crashLoopRestarts is how many liveness restarts make a resource count as
// crash-looping in the device's conditions.
const crashLoopRestarts = 3

// ResourceHealth is what the last health transition of a resource said:
// which probe ("readiness", "liveness", "startup", or "kind" for the kind's
// own health), why, how many times in a row, its last output, the liveness
// restarts so far and the next one.
type ResourceHealth struct {
	Probe       string     `json:"probe,omitempty"`
	Reason      string     `json:"reason,omitempty"`
	Failures    int        `json:"failures,omitempty"`
	Output      string     `json:"output,omitempty"`
	Restarts    int        `json:"restarts,omitempty"`
	NextRestart *time.Time `json:"nextRestart,omitempty"`
	At          time.Time  `json:"at"` // of the status change that said it
}

func (h *ResourceHealth) clone() *ResourceHealth {
	if h == nil {
		return nil
	}
	c := *h
	c.NextRestart = clone(h.NextRestart)
	return &c
}

func clone(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	c := *t
	return &c
}

// foldFailing keeps the first-failed time and the repeat count: a Failed
// resource that retries (Failed -> Reconciling -> Failed) keeps its
// FailedSince, and the same error again counts as a repeat.
func (r *resourceState) foldFailing(e events.Stored, p *events.StatusChanged) {
	switch p.To {
	case "Failed":
		if r.FailedSince == nil {
			at := e.At
			r.FailedSince = &at
		}
		r.Since = *r.FailedSince
		text := p.Error
		if text == "" {
			text = p.Reason
		}
		if r.Repeats > 0 && text == r.Error {
			r.Repeats++
		} else {
			at := e.At
			r.Repeats, r.ErrorSince = 1, &at
		}
	case "Reconciling":
		// a retry: the run of failures goes on until it succeeds
	default:
		r.FailedSince, r.Repeats, r.ErrorSince = nil, 0, nil
	}
}

// foldHealth keeps what a health transition said; a probeFailed names the
// probe, probePassed clears it but keeps the restart count until the spec
// changes.
func (r *resourceState) foldHealth(e events.Stored, p *events.StatusChanged) {
	switch {
	case p.To == "Unhealthy":
		r.Health = &ResourceHealth{Probe: p.Probe, Reason: p.Reason, Failures: p.Failures, Output: p.Error,
			Restarts: p.Restarts, NextRestart: clone(p.NextRestart), At: e.At}
	case p.To == "Ready" && r.Health != nil && r.Health.Restarts > 0:
		r.Health = &ResourceHealth{Restarts: r.Health.Restarts, At: e.At}
	case p.To == "Ready" && p.Trigger == "probePassed":
		r.Health = nil
	case p.To == "Pending" || p.To == "Removed":
		r.Health = nil
	}
}

// crashLooping reports whether r crash-loops.
func (r *resourceState) crashLooping() bool {
	h := r.Health
	return r.State == "Unhealthy" && h != nil && (h.Reason == "CrashLooping" || h.Restarts >= crashLoopRestarts)
}

// crashLoopCondition is the CrashLooping condition, listed only while a
// resource crash-loops.
func (d *deviceState) crashLoopCondition(ids []string) (Condition, bool) {
	var looping []string
	var first *resourceState
	for _, id := range ids {
		if r := d.Resources[id]; r.crashLooping() {
			looping = append(looping, id)
			if first == nil {
				first = r
			}
		}
	}
	if first == nil {
		return Condition{}, false
	}
	h := first.Health
	msg := fmt.Sprintf("%d resources crash-looping: %s (%s: %s", len(looping), list(looping), first.ID, healthLine(h))
	return Condition{Type: CondCrashLooping, Status: True, Reason: "ResourcesCrashLooping", Message: msg + ")"}, true
}

// healthLine says in one line what a health record says.
func healthLine(h *ResourceHealth) string {
	if h == nil {
		return "no health recorded"
	}
	var parts []string
	if h.Probe == "kind" {
		parts = append(parts, fmt.Sprintf("its own health says %s", h.Reason))
	} else if h.Probe != "" {
		parts = append(parts, fmt.Sprintf("%s probe failed %d times in a row (%s)", h.Probe, h.Failures, h.Reason))
	}
	if h.Output != "" {
		parts = append(parts, fmt.Sprintf("last output %q", h.Output))
	}
	if h.Restarts > 0 {
		parts = append(parts, fmt.Sprintf("%d restarts", h.Restarts))
	}
	if h.NextRestart != nil {
		parts = append(parts, "next restart at "+ts(*h.NextRestart))
	}
	return strings.Join(parts, ", ")
}
