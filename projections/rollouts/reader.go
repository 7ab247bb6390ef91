package rollouts

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/rollout"
)

// Reader answers the rollout read side (api.Rollouts): rollouts folded
// from the log, their waves judged with the device read models.
type Reader struct {
	Log     events.Store
	Devices Devices
	Past    Past             // time travel: the devices as they were (nil: a past view is not judged)
	Now     func() time.Time // default time.Now

	cur current // the rollouts now, read incrementally (current.go)
}

var _ api.Rollouts = (*Reader)(nil)

func (x *Reader) now() time.Time {
	if x.Now != nil {
		return x.Now()
	}
	return time.Now()
}

// List implements api.Rollouts.
func (x *Reader) List(ctx context.Context) ([]api.RolloutView, error) {
	var out []api.RolloutView
	err := x.cur.with(ctx, x.Log, func(set *rollout.Set, order []string, broken map[string]error) error {
		out = make([]api.RolloutView, 0, len(order))
		for _, id := range order {
			if err := broken[id]; err != nil {
				return err
			}
			r, _ := set.Get(id)
			out = append(out, x.View(ctx, r.Clone(), true)) // the view keeps it: not the one that folds on
		}
		return nil
	})
	return out, err
}

// Get implements api.Rollouts.
func (x *Reader) Get(ctx context.Context, id string, at time.Time, seq uint64) (api.RolloutView, error) {
	if at.IsZero() && seq == 0 {
		var v api.RolloutView
		err := x.cur.with(ctx, x.Log, func(set *rollout.Set, _ []string, broken map[string]error) error {
			if err := events.CheckID("rollout", id); err != nil {
				return err
			}
			if err := broken[id]; err != nil {
				return err
			}
			r, ok := set.Get(id)
			if !ok {
				return fmt.Errorf("rollout %s: %w (see 'fleet rollout list')", id, events.ErrNotFound)
			}
			v = x.View(ctx, r.Clone(), true) // the view keeps it: not the one that folds on
			return nil
		})
		return v, err
	}
	r, err := LoadAt(ctx, x.Log, id, at, seq)
	if err != nil {
		return api.RolloutView{}, err
	}
	var v api.RolloutView
	switch {
	case x.Past != nil:
		// time travel: the wave in progress judged with its devices as
		// they were then, and the soak's clock then
		v = x.view(ctx, r, func(ctx context.Context, id string) (projections.Device, bool, error) {
			return x.Past.DeviceAt(ctx, id, at, seq)
		}, pastMoment(r, at))
	default:
		v = x.View(ctx, r, false)
	}
	if !at.IsZero() {
		v.AsOf = &at
	}
	return v, nil
}

// View is the rollout's view; judge says whether to judge the wave in
// progress with the device read models now.
func (x *Reader) View(ctx context.Context, r *rollout.Rollout, judge bool) api.RolloutView {
	if !judge || x.Devices == nil {
		return x.view(ctx, r, nil, time.Time{})
	}
	return x.view(ctx, r, func(ctx context.Context, id string) (projections.Device, bool, error) {
		d, err := x.Devices.Device(ctx, id)
		return d, err == nil, err
	}, x.now())
}

// deviceOf is a device's read model, now or as it was; false: none.
type deviceOf func(ctx context.Context, id string) (projections.Device, bool, error)

// view is the rollout's view, the wave in progress judged at now with the
// devices dev gives (nil: not judged).
func (x *Reader) view(ctx context.Context, r *rollout.Rollout, dev deviceOf, now time.Time) api.RolloutView {
	v := api.RolloutView{Rollout: r, Budget: fmt.Sprintf("%d failed of at most %d", len(r.Failed), r.Spec.MaxFailures)}
	if r.Spec.MaxFailurePercent > 0 {
		v.Budget += fmt.Sprintf(" (or %g%%)", r.Spec.MaxFailurePercent)
	}
	for i, w := range r.Waves {
		g := api.WaveGate{Wave: i, Size: r.Spec.Waves[i], Devices: len(w), State: "waiting"}
		for _, d := range w {
			if r.Targeted[d] != nil {
				g.Targeted++
			}
		}
		switch {
		case r.Passed[i]:
			g.State, g.Passed = "passed", g.Targeted
		case i == r.Current && (r.State == rollout.Failing || len(r.Failed) > 0):
			g.State, g.Failed = "failed", len(r.Failed)
		case i == r.Current:
			g.State = "in progress"
		}
		if i == r.Current && !r.Passed[i] && dev != nil {
			g.Passed, g.Failed, g.Waiting, g.Offline = 0, 0, 0, 0
			var first string
			for _, d := range w {
				t := r.Targeted[d]
				if t == nil {
					g.Waiting++
					continue
				}
				rm, ok, err := dev(ctx, d)
				if err != nil || !ok {
					g.Waiting++
					continue
				}
				verdict, why := Judge(rm, t, r.Spec.Soak, now)
				switch verdict {
				case Passed:
					g.Passed++
				case Failed:
					g.Failed++
				case Offline:
					g.Offline++
				default:
					g.Waiting++
					if first == "" {
						first = d + ": " + why
					}
				}
			}
			if r.State == rollout.Running {
				v.WaitingOn = fmt.Sprintf("wave %d: %d of %d passed, %d failed, %d waiting, %d offline", i, g.Passed, g.Devices, g.Failed, g.Waiting, g.Offline)
				if first != "" {
					v.WaitingOn += " (first waiting: " + first + ")"
				}
			}
		}
		v.WaveGates = append(v.WaveGates, g)
	}
	if r.State == rollout.Paused {
		v.WaitingOn = "an operator (resume, promote or abort): " + r.Reason
	}
	return v
}

// HeldBy implements api.Rollouts.
func (x *Reader) HeldBy(ctx context.Context, device string) ([]api.RolloutHold, error) {
	if err := events.CheckID("device", device); err != nil {
		return nil, err
	}
	var out []api.RolloutHold
	err := x.cur.with(ctx, x.Log, func(set *rollout.Set, order []string, broken map[string]error) error {
		for _, id := range order {
			if err := broken[id]; err != nil {
				return err
			}
			r, _ := set.Get(id)
			if h, ok := Hold(r, device); ok {
				out = append(out, h)
			}
		}
		return nil
	})
	return out, err
}

// Hold says how rollout r holds device, if it matches it and has not ended.
func Hold(r *rollout.Rollout, device string) (api.RolloutHold, bool) {
	if rollout.Terminal(r.State) {
		return api.RolloutHold{}, false
	}
	wave := slices.IndexFunc(r.Waves, func(w []string) bool { return slices.Contains(w, device) })
	if wave < 0 {
		return api.RolloutHold{}, false
	}
	h := api.RolloutHold{Rollout: r.ID, State: r.State, Wave: wave, Current: r.Current}
	t := r.Targeted[device]
	switch {
	case t != nil && r.State == rollout.Paused:
		h.Reason = fmt.Sprintf("targeted in wave %d (generation %d); the rollout is paused: %s", wave, t.Generation, r.Reason)
	case t != nil:
		h.Reason = fmt.Sprintf("targeted in wave %d (generation %d); the rollout is %s", wave, t.Generation, r.State)
	case r.State == rollout.Paused:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d, not targeted: the rollout is paused (%s)", wave, r.Reason)
	case r.State == rollout.Failing:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d, not targeted: wave %d spent the failure budget (%s)", wave, r.Current, r.Reason)
	case wave > r.Current && r.Current < 0:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d, which has not started (no wave started yet)", wave)
	case wave > r.Current:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d, which has not started (wave %d in progress)", wave, r.Current)
	case r.Spec.MaxPerMinute > 0:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d in progress, not targeted yet: paced at --max-per-minute %d", wave, r.Spec.MaxPerMinute)
	default:
		h.Held, h.Reason = true, fmt.Sprintf("matched, in wave %d in progress, not targeted yet: the controller targets it at its next step", wave)
	}
	return h, true
}
