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
			if err := s.fitsBatch(batch); err != nil {
				return fmt.Errorf("append batch of %d: %w", n, err)
			}
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

// fitsBatch refuses (events.ErrRefused, without sending) a batch with a
// message whose body alone is larger than the stream takes: the server
// answers such an atomic batch only when the client's wait runs out, while
// the same message sent alone is refused at once with the reason, so the
// writer sends the batch one message at a time (the agent's outbox: the
// rest go on, the large one is parked with the log's answer).
func (s *Store) fitsBatch(batch []events.Encoded) error {
	if s.stream == nil {
		return nil
	}
	max := int64(s.stream.CachedInfo().Config.MaxMsgSize)
	if max <= 0 {
		return nil
	}
	for _, e := range batch {
		if int64(len(e.Data)) > max {
			return &refusedError{err: fmt.Errorf("event %s on %s is %d bytes: the stream %s takes at most %d (max_msg_size); send it alone for the log's answer",
				e.ID, e.Subject, len(e.Data), events.Stream, max)}
		}
	}
	return nil
}
