package rollouts

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/rollout"
)

// current is the rollouts as the log has them now, kept by a Reader and
// brought up to date on each question by reading only what was appended
// since the last one: every GET /api/devices/{id} (HeldBy) and the live
// rollout page (List, Get) would otherwise read every rollout's events
// again, one log read per rollout ever started.
type current struct {
	mu     sync.Mutex
	set    *rollout.Set
	order  []string         // rollout ids in the order they started (as List gives them)
	broken map[string]error // a rollout whose events break its table: answered with the error, as Load does
	next   uint64           // the log sequence to read from next
}

// with runs fn with the rollouts up to date, under the lock (fn must not
// keep a *rollout.Rollout past its return).
func (c *current) with(ctx context.Context, l events.Store, fn func(set *rollout.Set, order []string, broken map[string]error) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil {
		c.set, c.order, c.broken, c.next = rollout.NewSet(), nil, map[string]error{}, 1
	}
	last, err := l.LastSeq(ctx)
	if err != nil {
		return fmt.Errorf("read rollouts: %w", err)
	}
	if last >= c.next {
		f := events.Filter{SubjectFilters: []string{events.RolloutsFilter, events.TargetedSubject("*", "*")}, FromSeq: c.next, ToSeq: last}
		for s, err := range l.Read(ctx, f) {
			var bad *events.BadMessage
			if errors.As(err, &bad) {
				continue
			}
			if err != nil {
				c.set = nil // read again from the start next time: this pass stopped part way
				return fmt.Errorf("read rollouts: %w", err)
			}
			if !events.WrittenByItsWriter(s.Event) || c.broken[s.Resource] != nil {
				continue // forged (reported by replay --verify, never folded), or a rollout already broken
			}
			if _, ok := c.set.Get(s.Resource); !ok && s.Type == events.TypeRolloutStarted {
				c.order = append(c.order, s.Resource)
			}
			if err := c.set.Apply(s); err != nil {
				c.broken[s.Resource] = err
			}
		}
		c.next = last + 1
	}
	return fn(c.set, c.order, c.broken)
}
