package projections

import (
	"context"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Log is what the projection service needs of the log: its batched read
// and follow, and where it begins and ends (events.Store has both; cmd
// passes the JetStream one in).
type Log interface {
	Batcher
	State(ctx context.Context) (events.LogState, error)
}

// skip is a message that reached no model: why, by its sequence.
type skip struct {
	seq uint64
	err error
}

// serviceConsumer is the service as the runtime's consumer (FollowLog):
// it folds a batch into the live models and writes the parts it changed
// with the checkpoint in one Pebble batch. The log keeps no state of the
// service: the checkpoint in Pebble is the source of truth, and every
// follow starts from it.
type serviceConsumer Service

// Checkpoint is how far the live models have folded the log.
func (c *serviceConsumer) Checkpoint() uint64 {
	s := (*Service)(c)
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.m.applied
}

// ApplyBatch takes in one batch of the log as Run does: folds it into the
// live models and writes them with the checkpoint (deliveries at or below
// it are skipped). For callers that feed the runtime themselves (tests,
// the time-travel index's Apply); not while Run runs.
func (s *Service) ApplyBatch(b events.Batch) error { return (*serviceConsumer)(s).ApplyBatch(b) }

// ApplyBatch folds b into the live models and writes them.
func (c *serviceConsumer) ApplyBatch(b events.Batch) error {
	s := (*Service)(c)
	s.noteLast(b.Last() + b.Pending)
	start := time.Now()
	s.applyMu.Lock() // before s.m is read: a rebuild swaps it under applyMu
	if err := Writable(s.m.db); err != nil {
		s.applyMu.Unlock()
		return err // nothing folded: the checkpoint stays, FollowLog tries again
	}
	info := s.applyRuns(s.m, b.Runs, true)
	if err := s.flush(s.m, s.syncEvery <= 0, true, &info); err != nil {
		s.applyMu.Unlock()
		return err
	}
	if s.syncEvery > 0 {
		s.unsynced.Store(true)
	}
	s.applyMu.Unlock()
	info.Fold = time.Since(start)
	s.done(info)
	return nil
}
