package jsstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
)

// What a JetStream cluster answers a writer, and what fleet does with it.
//
// On a replicated stream a write can fail without being refused: the
// leader is being elected (no responders, "cluster not available", "not
// leader", "stream offline"), the ack was lost (a timeout: the write may or
// may not be stored), an atomic batch was abandoned when its leader went
// away, or a conditional write found an earlier write to its subject still
// in flight ("wrong last sequence" without a number, 10164, even where the
// expected value will be right once the earlier write commits). Each of
// these is sent again, as it is: the same subject, bytes and Nats-Msg-Id,
// so the stream's duplicate window turns a second copy of a write that was
// stored after all into a duplicate ack, never a second event; and nothing
// is given up while the caller's deadline allows, so nothing is lost.
// A refusal (a real conflict, a message too large, a subject the stream
// does not take) is returned at once.

// Server error codes fleet acts on (nats.go has no constants for most).
const (
	errNoSuitablePeers       = 10005 // no suitable peers for placement: a peer seen offline (a loaded node missed its heartbeats)
	errClusterNotAvailable   = 10008 // JetStream system temporarily unavailable
	errClusterNotLeader      = 10009 // JetStream cluster can not handle request
	errNotEnabled            = 10076 // JetStream not enabled (a node still starting)
	errStreamOffline         = 10118
	errExpectedNotReady      = 10163 // expected last sequence per subject temporarily unavailable
	errBatchIncomplete       = 10176 // the batch was abandoned (its leader changed)
	errAtomicTooManyInflight = 10210
	errBatchTooManyInflight  = 10211
)

// DefaultRetryFor bounds how long a write is retried when the caller's
// context has no deadline.
const DefaultRetryFor = 30 * time.Second

// attemptTimeout bounds one attempt, so that a request to a leader that
// died is sent again to the next one instead of waiting out the caller.
const attemptTimeout = 3 * time.Second

// retryable reports whether a failed write may be sent again as it is:
// the cluster could not take it now, or its outcome is unknown.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errNoSuitablePeers, errClusterNotAvailable, errClusterNotLeader, errNotEnabled, errStreamOffline, errExpectedNotReady,
			errBatchIncomplete, errAtomicTooManyInflight, errBatchTooManyInflight,
			jetstream.JSErrCodeStreamWrongLastSequenceConstant:
			return true
		}
		return apiErr.Code == 503
	}
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) // reconnecting with its buffer full: not sent, send again
}

// inFlight reports whether a conditional write was refused because an
// earlier write to its subject had not committed yet.
func inFlight(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// retrying calls attempt until it succeeds, fails with an error that is
// not retryable, or ctx (or DefaultRetryFor, if ctx has no deadline) runs
// out; it then returns the last error. Each attempt gets its own timeout
// within that bound. attempt must send the same write every time (same
// Nats-Msg-Id): that is what makes retrying safe.
func retrying[T any](ctx context.Context, attempt func(ctx context.Context) (T, error)) (T, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRetryFor)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		v, err := attempt(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return v, err
		}
		d := wait/2 + rand.N(wait) // jitter: racing writers do not retry in step
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(d):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// publish sends the message build returns (a fresh one each attempt: a
// publisher may add headers to it) until the stream acknowledges it.
func (s *Store) publish(ctx context.Context, build func() *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return retrying(ctx, func(ctx context.Context) (*jetstream.PubAck, error) {
		return s.js.PublishMsg(ctx, build(), opts...)
	})
}

// EnsureKeyValue creates or updates a KV bucket, retrying while the
// cluster cannot answer (a meta leader being elected). Applying the same
// config again changes nothing.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := retrying(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, unavailable(err))
	}
	return kv, nil
}

// publishBatch publishes msgs as one atomic batch, again while the cluster
// cannot take it (an abandoned batch stored nothing; one whose ack was lost
// comes back as errBatchHasDuplicate, for the caller to resolve).
func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg) error {
	_, err := retrying(ctx, func(ctx context.Context) (struct{}, error) {
		fresh := make([]*nats.Msg, len(msgs))
		for i, m := range msgs {
			fresh[i] = copyMsg(m)
		}
		_, err := jetstreamext.PublishMsgBatch(ctx, s.js, fresh)
		return struct{}{}, err
	})
	return err
}

// copyMsg is a new message with m's subject, data and Nats-Msg-Id: what a
// retry sends (publishers set headers of their own on the messages they send).
func copyMsg(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	c.Data = m.Data
	c.Header.Set(jetstream.MsgIDHeader, m.Header.Get(jetstream.MsgIDHeader))
	return c
}

// keepSources carries the sources of the stream as it is into want: fleet
// does not manage them (a site adds its own, see fleet site), so re-applying
// fleet's config must not drop them.
func keepSources(want *jetstream.StreamConfig, have jetstream.StreamConfig) {
	want.Sources = have.Sources
}

func streamRetrying(ctx context.Context, js jetstream.JetStream) (jetstream.Stream, error) {
	return retrying(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, events.Stream) })
}

func createStreamRetrying(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retrying(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		s, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			// an earlier attempt whose answer was lost created it
			return js.UpdateStream(ctx, cfg)
		}
		return s, err
	})
}

func updateStreamRetrying(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retrying(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.UpdateStream(ctx, cfg) })
}
