package projections

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ManifestRef names the manifest a resource's desired state comes from.
type ManifestRef struct {
	Generation int64     `json:"generation"`
	EventID    string    `json:"eventId"`
	Seq        uint64    `json:"seq"`
	Actor      string    `json:"actor"` // who applied it
	At         time.Time `json:"at"`
	Digest     string    `json:"digest"`
	Signed     bool      `json:"signed"`
	// SpecGeneration is the generation that last changed this resource's spec.
	SpecGeneration int64 `json:"specGeneration"`
}

// Explanation answers "why is this resource not Ready": the manifest and who
// applied it, the last attempts with their errors, and the next retry.
type Explanation struct {
	Device       string       `json:"device"`
	Resource     string       `json:"resource"`
	Kind         string       `json:"kind"`
	State        string       `json:"state"`
	Since        time.Time    `json:"since"`
	Ready        bool         `json:"ready"`
	Reason       string       `json:"reason,omitempty"` // e.g. UnknownKind
	Error        string       `json:"error,omitempty"`
	Attempts     int          `json:"attempts"`
	RetryAfter   *time.Time   `json:"retryAfter"`
	Manifest     *ManifestRef `json:"manifest"`           // nil: no manifest names this resource
	InManifest   bool         `json:"inManifest"`         // the last manifest still lists it
	LastAttempts []Attempt    `json:"lastAttempts"`       // newest last
	Rejected     *string      `json:"rejected,omitempty"` // a newer manifest the agent refused
	Drift        *string      `json:"drift,omitempty"`    // a drift the agent reported and left as found (driftPolicy: report)
	// Repeats is how many failures in a row gave Error, the first at
	// ErrorSince (a resource failing for good says so).
	Repeats    int        `json:"repeats,omitempty"`
	ErrorSince *time.Time `json:"errorSince,omitempty"`
	// Health is what the last health transition said: the probe that
	// failed, how often, its last output, the restarts and the next one.
	Health *ResourceHealth `json:"health,omitempty"`
	Why    []string        `json:"why"` // the chain, one sentence a step
}

// Explain returns the chain of facts behind one resource's state. It answers
// for Ready resources too (Ready is then true and Why says so); false if the
// device or resource is unknown.
func (f *Fleet) Explain(device, resource string) (Explanation, bool) {
	d := f.devices[device]
	if d == nil || d.Deregistered {
		return Explanation{}, false
	}
	r := d.Resources[resource]
	if r == nil {
		return Explanation{}, false
	}
	x := Explanation{Device: device, Resource: resource, Kind: r.Kind, State: r.State, Since: r.Since,
		Ready: r.State == "Ready", Reason: r.Reason, Error: r.Error, Attempts: r.Attempts,
		LastAttempts: slices.Clone(r.Last), Repeats: r.Repeats, ErrorSince: clone(r.ErrorSince), Health: r.Health.clone()}
	if x.LastAttempts == nil {
		x.LastAttempts = []Attempt{}
	}
	if r.RetryAfter != nil {
		t := *r.RetryAfter
		x.RetryAfter = &t
	}
	if m := d.Manifest; m != nil {
		ref := &ManifestRef{Generation: m.Generation, EventID: m.ID, Seq: m.Seq, Actor: m.Actor, At: m.At, Digest: m.Digest, Signed: m.Signed}
		for _, mr := range m.Resources {
			if mr.ID == resource {
				ref.SpecGeneration, x.InManifest = mr.SpecGen, true
			}
		}
		x.Manifest = ref
	}
	if d.rejectedNow() {
		s := fmt.Sprintf("generation %d was rejected by the agent at %s: %s (it keeps generation %d)",
			d.Rejected.Generation, ts(d.Rejected.At), d.Rejected.Reason, d.Rejected.KeptGeneration)
		x.Rejected = &s
	}
	if r.Drift != nil && r.State == "Ready" {
		s := r.Drift.text()
		x.Drift = &s
	}
	x.Why = x.chain(r)
	return x, true
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (x Explanation) chain(r *resourceState) []string {
	var why []string
	switch {
	case x.Manifest == nil:
		why = append(why, "no manifest has been applied to this device")
	case x.InManifest:
		why = append(why, fmt.Sprintf("desired by manifest generation %d, applied by %s at %s (sequence %d); this resource's spec last changed in generation %d",
			x.Manifest.Generation, x.Manifest.Actor, ts(x.Manifest.At), x.Manifest.Seq, x.Manifest.SpecGeneration))
	default:
		why = append(why, fmt.Sprintf("manifest generation %d (applied by %s at %s) no longer lists it; the agent has not reported it removed yet",
			x.Manifest.Generation, x.Manifest.Actor, ts(x.Manifest.At)))
	}
	if x.Rejected != nil {
		why = append(why, *x.Rejected)
	}
	if !r.Reported && x.Rejected != nil {
		why = append(why, "the agent will not apply it: it refused the manifest (sign it with a key the agent trusts: fleet apply --key)")
	} else if !r.Reported {
		why = append(why, "the agent has not reported on it yet (offline, or not yet seen this generation)")
	} else {
		s := fmt.Sprintf("%s since %s", x.State, ts(x.Since))
		if r.Trigger != "" {
			s += " (" + r.Trigger + ")"
		}
		if x.Reason != "" {
			s += ", reason " + x.Reason
		}
		why = append(why, s)
	}
	if n := len(x.LastAttempts); n > 0 {
		var parts []string
		for _, a := range x.LastAttempts {
			p := fmt.Sprintf("#%d %s at %s", a.Attempt, a.Outcome, ts(a.At))
			if a.Error != "" {
				p += ": " + a.Error
			}
			parts = append(parts, p)
		}
		noun := "attempts"
		if x.Attempts == 1 {
			noun = "attempt"
		}
		why = append(why, fmt.Sprintf("%d %s this generation; the last %d recorded: %s", x.Attempts, noun, n, strings.Join(parts, "; ")))
	}
	if x.Repeats > 1 && x.ErrorSince != nil {
		why = append(why, fmt.Sprintf("the error repeats: %d times in a row since %s", x.Repeats, ts(*x.ErrorSince)))
	}
	if h := x.Health; h != nil && (x.State == "Unhealthy" || h.Restarts > 0) {
		why = append(why, "health: "+healthLine(h))
	}
	switch {
	case x.Ready && x.Drift != nil:
		why = append(why, "it is Ready for the agent but not as desired: "+*x.Drift+"; restore it by hand, or apply with driftPolicy: correct to have the agent put it back")
	case x.Ready:
		why = append(why, "it is Ready: nothing to explain")
	case x.State == "Unhealthy":
		why = append(why, "it is applied but not Ready: the agent keeps probing it and marks it Ready when its probes pass")
	case x.RetryAfter != nil:
		why = append(why, "next retry not before "+ts(*x.RetryAfter))
	case x.State == "Failed":
		why = append(why, "no retry scheduled (the agent will not retry without a spec change)")
	case r.Reported && (x.State == "Pending" || x.State == "Reconciling"):
		why = append(why, "the agent is working on it")
	}
	return why
}
