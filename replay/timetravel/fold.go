// Package timetravel answers "what did device D look like at time T": the
// fold, in log order, of D's events stamped (At, the writer's clock) at or
// before T. The fold is projections.Fleet, the same one the projection
// service runs; this package only chooses which events to fold.
//
// Two ways to answer: FoldAt reads the device's events and folds them (the
// reference, and the fallback when no index runs), and Index keeps, per
// device, the (at, seq) of every event, the events themselves and
// snapshots of the fold, so an answer folds at most a few hundred events.
package timetravel

import (
	"iter"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Query says which moment to answer for: At (event time) if set, else
// Seq (stream position: every event of the device stored at or before it),
// else now (every event).
type Query struct {
	Device string    `json:"device"`
	At     time.Time `json:"at,omitzero"`
	Seq    uint64    `json:"seq,omitempty"`
	// MinSeq, for the micro service: wait (briefly) until the index has
	// taken in the log up to here, so the answer includes what the asker
	// saw on the stream. The reply's Checkpoint says how far it got.
	MinSeq uint64 `json:"minSeq,omitempty"`
}

// includes reports whether the event belongs to the state q asks for.
func (q Query) includes(s events.Stored) bool {
	switch {
	case !q.At.IsZero():
		return !s.At.After(q.At)
	case q.Seq > 0:
		return s.Seq <= q.Seq
	}
	return true
}

// FoldAt folds, in log order, the events of seq that belong to q (seq
// should be the device's events, e.g. a store Read filtered on it; other
// devices' events are ignored). It returns the device and whether it existed
// at that moment, and how many events it folded. Messages that do not
// decode are skipped, as the live projection skips them; any other error
// is returned.
func FoldAt(seq iter.Seq2[events.Stored, error], q Query) (projections.Device, bool, int, error) {
	f := projections.NewFleet()
	n := 0
	for s, err := range seq {
		if err != nil {
			if isBad(err) {
				continue
			}
			return projections.Device{}, false, n, err
		}
		if s.Device != q.Device || !q.includes(s) {
			continue
		}
		f.Apply(s)
		n++
	}
	d, ok := f.Device(q.Device)
	return d, ok, n, nil
}
