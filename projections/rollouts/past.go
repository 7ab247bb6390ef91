package rollouts

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay/timetravel"
	"github.com/fleet-dev/fleet/rollout"
)

// Past is the device read models as they were (time travel): a device at
// event time at or, when at is zero, at stream sequence seq; false when it
// did not exist then.
type Past interface {
	DeviceAt(ctx context.Context, id string, at time.Time, seq uint64) (projections.Device, bool, error)
}

// PastOf answers Past from the time-travel index that `fleet server` runs
// (its micro service on Conn, a few hundred events folded an answer) and,
// when no index answers (Conn nil, none running), by folding the device's
// events from Log (timetravel.FoldAt, the reference). Heartbeats are not
// on the log, so a past device is never Stale: a device offline then
// counts as waiting, not offline.
type PastOf struct {
	Conn *nats.Conn // nil: fold from Log
	Log  events.Store
}

// DeviceAt implements Past.
func (p PastOf) DeviceAt(ctx context.Context, id string, at time.Time, seq uint64) (projections.Device, bool, error) {
	q := timetravel.Query{Device: id, At: at}
	if at.IsZero() {
		q.Seq = seq
	}
	if p.Conn != nil {
		rep, err := timetravel.Ask(ctx, p.Conn, q)
		switch {
		case err == nil:
			return rep.Device, rep.Exists, nil
		case errors.Is(err, events.ErrNotFound):
			return projections.Device{}, false, nil
		case !errors.Is(err, events.ErrUnavailable) || p.Log == nil:
			return projections.Device{}, false, err
		}
	}
	d, ok, _, err := timetravel.FoldAt(p.Log.Read(ctx, events.Filter{Device: id}), q)
	return d, ok, err
}

// pastMoment is the clock a past view judges the soak with: at, or for a
// stream sequence the rollout's last moment by then (its wave's start, its
// last resume, its last targeting).
func pastMoment(r *rollout.Rollout, at time.Time) time.Time {
	if !at.IsZero() {
		return at
	}
	m := r.StartedAt
	for _, t := range append([]time.Time{r.WaveAt, r.ResumedAt}, targetTimes(r)...) {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func targetTimes(r *rollout.Rollout) []time.Time {
	out := make([]time.Time, 0, len(r.Targeted))
	for _, t := range r.Targeted {
		out = append(out, t.At)
	}
	return out
}
