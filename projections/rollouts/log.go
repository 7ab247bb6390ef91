// Package rollouts drives fleet-wide rollouts: the controller that runs in
// `fleet server` and alone as `fleet rollout controller`. It reads the
// device read models (generation, resources Ready, Stale) and writes every
// decision as an event, compare-and-set on the rollout's subject
// (events.RolloutSubject), so that it resumes after a kill -9 from the log
// alone and two controllers never both act: the one whose append loses the
// race reads the log again and finds the decision made. The rollout's
// rules (table, waves) are package rollout's.
package rollouts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/rollout"
)

// Log is what the controller needs of the log (jsstore.Store has it).
type Log interface {
	events.Store
	AppendExpect(ctx context.Context, e events.Event, expectedLastSeq uint64) (uint64, error)
}

// Load folds one rollout from the log: its decisions and DeviceTargeted
// events. events.ErrNotFound if it has none. A rule the log breaks is an
// error (see `fleet replay --verify`).
func Load(ctx context.Context, l events.Store, id string) (*rollout.Rollout, error) {
	return LoadAt(ctx, l, id, time.Time{}, 0)
}

// LoadAt is time travel: the rollout as it was at time at (its events in
// log order up to the first whose time is after at), or as of stream
// sequence seq; zero for both is now. events.ErrNotFound if it had not
// started by then.
func LoadAt(ctx context.Context, l events.Store, id string, at time.Time, seq uint64) (*rollout.Rollout, error) {
	if err := events.CheckID("rollout", id); err != nil {
		return nil, err
	}
	set := rollout.NewSet()
	f := events.Filter{SubjectFilters: []string{events.RolloutSubject(id), events.TargetedSubject("*", id)}, ToSeq: seq}
	for s, err := range l.Read(ctx, f) {
		if err == nil && !at.IsZero() && s.At.After(at) {
			break // a prefix of the log: what was decided by then
		}
		var bad *events.BadMessage
		if errors.As(err, &bad) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read rollout %s: %w", id, err)
		}
		if !events.WrittenByItsWriter(s.Event) {
			continue // forged: reported by replay --verify, never folded
		}
		if err := set.Apply(s); err != nil {
			return nil, err
		}
	}
	r, ok := set.Get(id)
	if !ok && (!at.IsZero() || seq > 0) {
		return nil, fmt.Errorf("rollout %s: had not started by then: %w", id, events.ErrNotFound)
	}
	if !ok {
		return nil, fmt.Errorf("rollout %s: %w (see 'fleet rollout list')", id, events.ErrNotFound)
	}
	return r, nil
}

// List returns the ids of every rollout on the log, sorted.
func List(ctx context.Context, l events.Store) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	for s, err := range l.Read(ctx, events.Filter{SubjectFilters: []string{events.RolloutsFilter}, Types: []string{events.TypeRolloutStarted}}) {
		var bad *events.BadMessage
		if errors.As(err, &bad) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list rollouts: %w", err)
		}
		if !seen[s.Resource] && events.WrittenByItsWriter(s.Event) {
			seen[s.Resource] = true
			ids = append(ids, s.Resource)
		}
	}
	return ids, nil
}

// Decide appends one decision of rollout r (payload p), expecting the
// rollout's subject to end at r.LastSeq: a *events.ConflictError when
// another controller or operator decided first (read again).
func Decide(ctx context.Context, l Log, clock *events.Clock, r *rollout.Rollout, actor string, p events.Payload) (uint64, error) {
	if _, err := rollout.Next(r.State, p.EventType()); err != nil {
		return 0, fmt.Errorf("rollout %s: %w", r.ID, err)
	}
	e, err := events.New("", r.ID, 0, actor, p)
	if err != nil {
		return 0, err
	}
	clock.Stamp(&e)
	return l.AppendExpect(ctx, e, r.LastSeq)
}

// DevicesOf is the controller's view of the projection service through its
// client (api.Client): Device, and Matching for devices that start to
// match during a rollout.
type DevicesOf struct {
	Client interface {
		Device(ctx context.Context, id string) (projections.Device, error)
		EachSummary(ctx context.Context, o api.ListOptions, max int) ([]api.DeviceSummary, api.FleetTotals, int, error)
	}
}

// Device implements Devices.
func (d DevicesOf) Device(ctx context.Context, id string) (projections.Device, error) {
	return d.Client.Device(ctx, id)
}

// Matching implements Matcher.
func (d DevicesOf) Matching(ctx context.Context, selector string) ([]string, error) {
	ds, _, _, err := d.Client.EachSummary(ctx, api.ListOptions{Selector: selector, Limit: api.MaxLimit}, 0)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ds))
	for _, s := range ds {
		ids = append(ids, s.Device)
	}
	return ids, nil
}
