package jsstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// Encoded is events.Encoded (the type moved to the contract: an agent's
// outbox record is not the adapter's); kept so existing callers build.
type Encoded = events.Encoded

// EncodedOf is events.EncodedOf.
func EncodedOf(e events.Event) (Encoded, error) { return events.EncodedOf(e) }

func encodedMsg(e events.Encoded) *nats.Msg {
	m := nats.NewMsg(e.Subject)
	m.Data = e.Data
	m.Header.Set(jetstream.MsgIDHeader, e.ID)
	return m
}

// AppendEncoded is AppendBatch for events already encoded and checked by
// their writer: it publishes their bytes as they are, in order, in atomic
// batches of at most MaxBatch, without decoding or checking them again (the
// writer promises they are valid; the stream still refuses what is not under
// fleet.> or too large). A batch the stream refuses because some of its
// events are stored already (a retry after a lost ack) is appended again one
// event at a time, in order, and the stream drops the copies. Errors: as
// AppendBatch (connection failures wrap events.ErrUnavailable; the
// stream's refusals wrap events.ErrRefused, and events.ErrTooLarge for a
// message it will never take as it is).
func (s *Store) AppendEncoded(ctx context.Context, evs []events.Encoded) error {
	for len(evs) > 0 {
		n := min(len(evs), MaxBatch)
		batch := evs[:n]
		if n == 1 {
			if _, err := s.publish(ctx, func() *nats.Msg { return encodedMsg(batch[0]) }); err != nil {
				return fmt.Errorf("append batch of 1: %w", refusal(unavailable(err)))
			}
		} else {
			msgs := make([]*nats.Msg, n)
			for i, e := range batch {
				msgs[i] = encodedMsg(e)
			}
			if err := s.publishBatch(ctx, msgs); err != nil {
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != errBatchHasDuplicate {
					return fmt.Errorf("append batch of %d: %w", n, refusal(unavailable(err)))
				}
				for _, e := range batch {
					if _, err := s.publish(ctx, func() *nats.Msg { return encodedMsg(e) }); err != nil {
						return fmt.Errorf("append batch retry of %d: %w", n, refusal(unavailable(err)))
					}
				}
			}
		}
		evs = evs[n:]
	}
	return nil
}
