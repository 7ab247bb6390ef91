package timetravel

import (
	"fmt"
	"sort"
	"time"

	"github.com/fleet-dev/fleet/projections"
)

// Change is one difference between a device at two moments.
type Change struct {
	Field string `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
}

// Diff lists what changed from a to b: generations, labels, conditions,
// resources added and removed, and each resource's state, attempts, error
// and retry time. Sorted by field; empty strings stand for "absent".
func Diff(a, b projections.Device) []Change {
	var out []Change
	add := func(field, from, to string) {
		if from != to {
			out = append(out, Change{field, from, to})
		}
	}
	add("generation", fmt.Sprint(a.Generation), fmt.Sprint(b.Generation))
	add("observedGeneration", fmt.Sprint(a.ObservedGeneration), fmt.Sprint(b.ObservedGeneration))
	add("lastSeen", tptr(a.LastSeen), tptr(b.LastSeen))
	for k := range union(a.Labels, b.Labels) {
		add("labels."+k, a.Labels[k], b.Labels[k])
	}
	ca, cb := map[string]projections.Condition{}, map[string]projections.Condition{}
	for _, c := range a.Conditions {
		ca[c.Type] = c
	}
	for _, c := range b.Conditions {
		cb[c.Type] = c
	}
	for k := range union(ca, cb) {
		add("conditions."+k, cond(ca, k), cond(cb, k))
	}
	ra, rb := map[string]projections.Resource{}, map[string]projections.Resource{}
	for _, r := range a.Resources {
		ra[r.ID] = r
	}
	for _, r := range b.Resources {
		rb[r.ID] = r
	}
	for id := range union(ra, rb) {
		x, inA := ra[id]
		y, inB := rb[id]
		p := "resources." + id
		switch {
		case !inA:
			add(p, "", y.Kind+" "+y.State)
		case !inB:
			add(p, x.Kind+" "+x.State, "")
		default:
			add(p+".state", x.State, y.State)
			add(p+".attempts", fmt.Sprint(x.Attempts), fmt.Sprint(y.Attempts))
			add(p+".error", x.Error, y.Error)
			add(p+".retryAfter", tptr(x.RetryAfter), tptr(y.RetryAfter))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Field < out[j].Field })
	return out
}

func cond(m map[string]projections.Condition, k string) string {
	c, ok := m[k]
	if !ok {
		return ""
	}
	if c.Reason != "" {
		return c.Status + " (" + c.Reason + ")"
	}
	return c.Status
}

func tptr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func union[V any](a, b map[string]V) map[string]bool {
	u := map[string]bool{}
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}
