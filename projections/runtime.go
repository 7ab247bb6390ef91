package projections

import (
	"context"
	"errors"
	"iter"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// The read side's runtime: one loop follows the log from a consumer's
// checkpoint a batch at a time (Batcher.Batches: the decode pipeline of
// the log's adapter), hands each batch to the consumer, which folds it and
// writes what it folded with its new checkpoint in one Pebble batch, and
// on a failure logs the cause (FailureLog) and follows again from the
// checkpoint a second later. Service.Run is this loop with the service as
// its consumer; the projection service (its read models) and the
// time-travel index (replay/timetravel: WithModels, WithName) are that
// service with different models.

// Batcher is the log's batched read and follow (events.Store has it).
type Batcher interface {
	Batches(ctx context.Context, f events.Filter, o events.BatchOptions) iter.Seq2[events.Batch, error]
}

// Consumer is what FollowLog drives: how far it has taken the log in, and
// how it takes in one batch (deliveries at or below its checkpoint may come
// again after a failure and must be skipped). ApplyBatch returns only once
// the batch is written with its checkpoint, or with the error that kept it
// from being written (the consumer's memory then agrees with its store
// again).
type Consumer interface {
	Checkpoint() uint64
	ApplyBatch(b events.Batch) error
}

// FollowOptions shape FollowLog.
type FollowOptions struct {
	Name  string      // the follower's name on the log's server (events.BatchOptions.Name)
	Max   int         // the most events a batch holds (0: the log's default)
	Fails *FailureLog // where failures are logged (nil: slog.Default())
	// Retry is how long to wait before following again after a failure
	// (0: a second).
	Retry time.Duration
	// Gate, if set, gives the context one follow runs under, or false
	// while following must not go on (it returns once that may have
	// changed); Stopped says whether a follow that ended was stopped by
	// the gate rather than by a failure. The projection service's log
	// guard (health.go) is such a gate.
	Gate    func(ctx context.Context) (context.Context, context.CancelFunc, bool)
	Stopped func() bool
	// Skip, if set, passes messages by subject undecoded (a partitioned
	// read side: events.BatchOptions.Skip); the consumer gets them as
	// Skipped deliveries, so its checkpoint moves past them.
	Skip func(subject string) bool
}

// FollowLog runs c on log until ctx is done; it returns nil then.
func FollowLog(ctx context.Context, log Batcher, c Consumer, o FollowOptions) error {
	if o.Fails == nil {
		o.Fails = NewFailureLog(nil, "following the log failed; it resumes from its checkpoint", nil)
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	fullWaits, fullAt := 0, uint64(0)
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if o.Gate != nil {
			var ok bool
			if fctx, cancel, ok = o.Gate(ctx); !ok {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
		}
		err := followOnce(fctx, log, c, o)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if o.Stopped != nil && o.Stopped() {
			continue
		}
		if err == nil {
			err = errors.New("the log's follow ended without an error")
		}
		// the log was lost (server restart, consumer deleted) or a write
		// failed: say why, and start again from the checkpoint
		o.Fails.Failed(err, c.Checkpoint())
		wait := o.Retry
		var full *StoreFullError
		if errors.As(err, &full) { // a store out of space: back off, up to 8 s
			if cp := c.Checkpoint(); cp != fullAt { // it wrote since: start again at Retry
				fullWaits, fullAt = 0, cp
			}
			fullWaits++
			wait = min(o.Retry<<min(fullWaits-1, 3), 8*time.Second)
		} else {
			fullWaits = 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func followOnce(ctx context.Context, log Batcher, c Consumer, o FollowOptions) error {
	bo := events.BatchOptions{Follow: true, Max: o.Max, Name: o.Name, Skip: o.Skip}
	for b, err := range log.Batches(ctx, events.Filter{FromSeq: c.Checkpoint() + 1}, bo) {
		if err != nil {
			return err
		}
		if err := c.ApplyBatch(b); err != nil {
			return err
		}
		o.Fails.OK()
	}
	return nil
}
