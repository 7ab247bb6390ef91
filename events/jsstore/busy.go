package jsstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// errAtomicTooManyInflight is the stream's answer (429) when more atomic
// batches are open on it than the server allows (50 a stream by default):
// the server is busy with other writers' batches, nothing is wrong with
// this one.
const errAtomicTooManyInflight jetstream.ErrorCode = 10210

// publishBatch publishes build()'s messages as one atomic batch. A batch
// the server refuses as one too many in flight is built and sent again
// after a short random pause (1 ms, doubling to 50 ms, each with up to as
// much again of jitter so that many writers spread out) until ctx ends; the
// server stored none of it, so nothing is duplicated. Other errors are
// returned at once.
func (s *Store) publishBatch(ctx context.Context, build func() []*nats.Msg) error {
	pause := time.Millisecond
	for {
		_, err := jetstreamext.PublishMsgBatch(ctx, s.js, build())
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != errAtomicTooManyInflight {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause + rand.N(pause)):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}
