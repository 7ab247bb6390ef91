package projections

import (
	"context"
	"iter"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Log is what the projection service needs of the log: its batched read
// and follow, and where it begins and ends (events.Store has both; cmd
// passes the JetStream one in).
type Log interface {
	Batches(ctx context.Context, f events.Filter, o events.BatchOptions) iter.Seq2[events.Batch, error]
	State(ctx context.Context) (events.LogState, error)
}

// skip is a message that reached no model: why, by its sequence.
type skip struct {
	seq uint64
	err error
}

// consume follows the log from checkpoint+1 a batch at a time (Batches:
// whatever has been delivered and decoded when the previous batch is
// written, up to maxBatch), folding and writing each batch with its
// checkpoint. The log keeps no state of the service: the checkpoint in
// Pebble is the source of truth, and every start follows from it.
func (s *Service) consume(ctx context.Context, log Log) error {
	s.applyMu.Lock()
	from := s.m.applied + 1
	s.applyMu.Unlock()
	opts := events.BatchOptions{Follow: true, Max: s.maxBatch, Name: s.durable}
	for b, err := range log.Batches(ctx, events.Filter{FromSeq: from}, opts) {
		if err != nil {
			return err
		}
		s.noteLast(b.Last() + b.Pending)
		start := time.Now()
		s.applyMu.Lock()
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
	}
	return nil
}
