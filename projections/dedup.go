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
//   - An event that carries a writer sequence (Event.Writer, WriterSeq) is
//     applied only if its sequence is greater than the last one applied from
//     the same actor and writer: a writer's events reach the stream in the
//     order it numbered them, so a repeat never carries a greater one. Its
//     id and time play no part, so a writer whose clock ran ahead and was
//     corrected, or a device whose state was wiped (a new writer, numbering
//     from 1 again), is folded.
//   - Any other event (older agents) is applied only if its ULID is greater
//     than the last one applied from the same actor on the same device:
//     every writer's clock is monotonic and its events reach the stream in
//     the order it produced them, so a repeat never carries a greater id.
type dedup struct {
	LastID    map[string]string `json:"lastId,omitempty"`    // actor -> last applied event id
	WriterSeq map[string]uint64 `json:"writerSeq,omitempty"` // actor " " writer -> last applied wseq
}

// fresh reports whether e is new, and records it if so. gen is the device's
// current manifest generation.
func (d *dedup) fresh(e events.Event, gen int64) bool {
	if e.Type == events.TypeManifestApplied {
		return e.Generation > gen
	}
	if e.Type == events.TypeDeviceLabeled {
		return true // written compare-and-set (never twice); the fold skips one it folded (labels.go)
	}
	if e.Writer != "" {
		k := e.Actor + " " + e.Writer
		if e.WriterSeq <= d.WriterSeq[k] {
			return false
		}
		if d.WriterSeq == nil {
			d.WriterSeq = map[string]uint64{}
		}
		d.WriterSeq[k] = e.WriterSeq
		return true
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
