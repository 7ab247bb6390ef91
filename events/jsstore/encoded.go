package jsstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// Encoded is an event in its wire form, encoded and checked by its writer
// when it was produced (an agent's outbox keeps events this way): the
// subject it belongs on, its id (sent as Nats-Msg-Id) and its JSON.
type Encoded struct {
	Subject string
	ID      string
	Data    []byte
}

// EncodedOf encodes and checks e (events.Encode, events.SubjectFor).
func EncodedOf(e events.Event) (Encoded, error) {
	subj, err := events.SubjectFor(e)
	if err != nil {
		return Encoded{}, err
	}
	data, err := events.Encode(e)
	if err != nil {
		return Encoded{}, err
	}
	return Encoded{Subject: subj, ID: e.ID, Data: data}, nil
}

func (e Encoded) msg() *nats.Msg {
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
// AppendBatch (connection failures wrap events.ErrUnavailable).
func (s *Store) AppendEncoded(ctx context.Context, evs []Encoded) error {
	for len(evs) > 0 {
		n := min(len(evs), MaxBatch)
		batch := evs[:n]
		if n == 1 {
			if _, err := s.publish(ctx, batch[0].msg); err != nil {
				return fmt.Errorf("append batch of 1: %w", unavailable(err))
			}
		} else {
			msgs := make([]*nats.Msg, n)
			for i, e := range batch {
				msgs[i] = e.msg()
			}
			if err := s.publishBatch(ctx, msgs); err != nil {
				var apiErr *jetstream.APIError
				if !errors.As(err, &apiErr) || apiErr.ErrorCode != errBatchHasDuplicate {
					return fmt.Errorf("append batch of %d: %w", n, unavailable(err))
				}
				for _, e := range batch {
					if _, err := s.publish(ctx, e.msg); err != nil {
						return fmt.Errorf("append batch retry of %d: %w", n, unavailable(err))
					}
				}
			}
		}
		evs = evs[n:]
	}
	return nil
}
