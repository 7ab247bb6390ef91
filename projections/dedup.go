package projections

import (
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// dedup drops events a fold has already applied. The log may hold an event
// twice (an agent draining its outbox after the stream's duplicate window,
// a consumer redelivering), and every fold applies it once.
//
// Rules, each following from how fleet's writers work (DESIGN.md):
//   - ManifestApplied is applied only if its generation is higher than the
//     device's current one: manifest writes are compare-and-set, so
//     generations only grow and a repeat carries the same generation.
//   - Any other event is applied only if its ULID is greater than the last
//     one applied from the same actor on the same device: every writer's
//     clock is monotonic and its events reach the stream in the order it
//     produced them, so a repeat never carries a greater id.
type dedup struct {
	LastID map[string]string `json:"lastId,omitempty"` // actor -> last applied event id
}

// fresh reports whether e is new, and records it if so. gen is the device's
// current manifest generation.
func (d *dedup) fresh(e events.Event, gen int64) bool {
	if e.Type == events.TypeManifestApplied {
		return e.Generation > gen
	}
	if last, ok := d.LastID[e.Actor]; ok && strings.Compare(e.ID, last) <= 0 {
		return false
	}
	if d.LastID == nil {
		d.LastID = map[string]string{}
	}
	d.LastID[e.Actor] = e.ID
	return true
}
