package replay

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// Follow yields the events that match f from stream sequence from on (1 or
// 0: the start of the log), in log order, and keeps yielding new ones as they
// are stored until ctx is done (then the sequence ends without an error).
// f.FromSeq and f.ToSeq are ignored. A message that does not decode is
// yielded as a *events.BadMessage and following goes on.
func Follow(ctx context.Context, js jetstream.JetStream, f events.Filter, from uint64) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) {
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: f.Subjects(), DeliverPolicy: jetstream.DeliverAllPolicy}
		if from > 1 {
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = from
		}
		cons, err := js.OrderedConsumer(ctx, events.Stream, cfg)
		if err != nil {
			yield(events.Stored{}, fmt.Errorf("follow log: %w", err))
			return
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(1024))
		if err != nil {
			yield(events.Stored{}, fmt.Errorf("follow log: %w", err))
			return
		}
		defer it.Stop()
		for {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					return
				}
				yield(events.Stored{}, fmt.Errorf("follow log: %w", err))
				return
			}
			s, err := jsstore.FromMsg(m)
			if err != nil {
				if !yield(events.Stored{}, err) {
					return
				}
				continue
			}
			if f.Match(s) && !yield(s, nil) {
				return
			}
		}
	}
}
