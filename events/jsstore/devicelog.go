package jsstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// What a device's agent uses of the log beyond appending
// (events.ManifestWatcher, events.HeartbeatWriter, events.ServerClock), and
// Lazy: the log over a client connection, attached on first use.

// LastManifestAfter implements events.ManifestWatcher with a direct get of
// the last message on the device's manifest subject (which a device's
// credentials allow); the message is decoded only when it is new.
func (s *Store) LastManifestAfter(ctx context.Context, device string, after uint64) (events.Stored, bool, error) {
	raw, err := s.stream.GetLastMsgForSubject(ctx, events.ManifestSubject(device))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return events.Stored{}, false, fmt.Errorf("manifest of %s: %w", device, events.ErrNotFound)
	case err != nil:
		return events.Stored{}, false, fmt.Errorf("manifest of %s: %w: %w", device, events.ErrUnavailable, err)
	case raw.Sequence <= after:
		return events.Stored{}, false, nil
	}
	st, err := FromRaw(raw.Subject, raw.Sequence, raw.Time, raw.Data)
	return st, err == nil, err
}

// PutHeartbeat implements events.HeartbeatWriter.
func (s *Store) PutHeartbeat(ctx context.Context, device string, beat []byte) error {
	return s.beats.put(ctx, s.js, device, beat)
}

// ServerTime implements events.ServerClock with the timestamp of a stream
// info answer.
func (s *Store) ServerTime(ctx context.Context) (time.Time, error) { return serverTime(ctx, s.js) }

func serverTime(ctx context.Context, js jetstream.JetStream) (time.Time, error) {
	st, err := js.Stream(ctx, events.Stream)
	if err != nil {
		return time.Time{}, unavailable(err)
	}
	t := st.CachedInfo().TimeStamp
	if t.IsZero() {
		return t, errors.New("the server's stream info carries no time")
	}
	return t, nil
}

// heartbeatPut writes to the heartbeat bucket, looked up once (again after
// a failed look-up).
type heartbeatPut struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (h *heartbeatPut) put(ctx context.Context, js jetstream.JetStream, device string, beat []byte) error {
	h.mu.Lock()
	kv := h.kv
	if kv == nil {
		var err error
		kv, err = js.KeyValue(ctx, events.HeartbeatBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			h.mu.Unlock()
			return fmt.Errorf("heartbeat bucket %s: %w (fleet server creates it)", events.HeartbeatBucket, events.ErrNotFound)
		}
		if err != nil {
			h.mu.Unlock()
			return fmt.Errorf("heartbeat bucket %s: %w", events.HeartbeatBucket, unavailable(err))
		}
		h.kv = kv
	}
	h.mu.Unlock()
	if _, err := kv.Put(ctx, device, beat); err != nil {
		return fmt.Errorf("heartbeat of %s: %w", device, unavailable(err))
	}
	return nil
}

// Lazy is the log over a client connection that attaches to the stream on
// first use (and again after an attach failed), so that a client such as
// an agent can start with no server and attach when one appears. The
// heartbeat bucket and the server's time need no attached stream. Safe for
// concurrent use.
type Lazy struct {
	nc    *nats.Conn
	mu    sync.Mutex
	js    jetstream.JetStream
	st    *Store
	beats heartbeatPut
}

// NewLazy returns the log over nc; nothing is asked of the server yet.
func NewLazy(nc *nats.Conn) *Lazy { return &Lazy{nc: nc} }

// jetStream returns the JetStream context (no server round trip).
func (l *Lazy) jetStream() (jetstream.JetStream, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.js == nil {
		js, err := jetstream.New(l.nc)
		if err != nil {
			return nil, err
		}
		l.js = js
	}
	return l.js, nil
}

// Store returns the attached store, attaching first if needed (within 5 s;
// not connected: events.ErrUnavailable at once).
func (l *Lazy) Store(ctx context.Context) (*Store, error) {
	js, err := l.jetStream()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	if !l.nc.IsConnected() {
		return nil, fmt.Errorf("attach to the log: %w: not connected", events.ErrUnavailable)
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := Attach(actx, js)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

// AppendEncoded is Store.AppendEncoded, attaching first.
func (l *Lazy) AppendEncoded(ctx context.Context, evs []events.Encoded) error {
	st, err := l.Store(ctx)
	if err != nil {
		return err
	}
	return st.AppendEncoded(ctx, evs)
}

// LastManifestAfter is Store.LastManifestAfter, attaching first.
func (l *Lazy) LastManifestAfter(ctx context.Context, device string, after uint64) (events.Stored, bool, error) {
	st, err := l.Store(ctx)
	if err != nil {
		return events.Stored{}, false, err
	}
	return st.LastManifestAfter(ctx, device, after)
}

// PutHeartbeat implements events.HeartbeatWriter without attaching.
func (l *Lazy) PutHeartbeat(ctx context.Context, device string, beat []byte) error {
	js, err := l.jetStream()
	if err != nil {
		return err
	}
	return l.beats.put(ctx, js, device, beat)
}

// ServerTime implements events.ServerClock without attaching.
func (l *Lazy) ServerTime(ctx context.Context) (time.Time, error) {
	js, err := l.jetStream()
	if err != nil {
		return time.Time{}, err
	}
	return serverTime(ctx, js)
}

// refusal marks the log's refusals of a message (events.ErrRefused, and
// events.ErrTooLarge for one it will never take as it is); other errors
// are returned as they are.
func refusal(err error) error {
	if err == nil {
		return nil
	}
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload):
		return &refusedError{err: err, tooLarge: true}
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum || apiErr.ErrorCode == errHeaderExceedsMaximum):
		return &refusedError{err: err, tooLarge: true}
	case errors.As(err, &apiErr) && (apiErr.Code == 400 || apiErr.Code == 413):
		return &refusedError{err: err}
	}
	return err
}

// errHeaderExceedsMaximum is the stream's answer to a header larger than it
// takes (nats.go has no constant for it).
const errHeaderExceedsMaximum jetstream.ErrorCode = 10097

type refusedError struct {
	err      error
	tooLarge bool
}

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }
func (e *refusedError) Is(target error) bool {
	return target == events.ErrRefused || (e.tooLarge && target == events.ErrTooLarge)
}

var (
	_ events.ManifestWatcher = (*Store)(nil)
	_ events.HeartbeatWriter = (*Store)(nil)
	_ events.ServerClock     = (*Store)(nil)
	_ events.ManifestWatcher = (*Lazy)(nil)
	_ events.HeartbeatWriter = (*Lazy)(nil)
	_ events.ServerClock     = (*Lazy)(nil)
)
