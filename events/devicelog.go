package events

import (
	"context"
	"errors"
	"time"
)

// What a device's agent needs of the log beyond appending: the newest
// manifest when it changed, the heartbeat bucket, and the server's time.
// Each is a small interface implemented once, by jsstore.Store; the agent
// declares the few methods it uses.

// Refusals: the log answered and will not take a message as it is. An
// adapter wraps its own refusals in these once, so a writer needs one
// errors.Is (the agent's outbox: a refused batch is sent one event at a
// time, and an event that is too large is parked).
var (
	// ErrRefused: the log answered and refused the message or batch (a bad
	// request, or larger than the connection carries); an unreachable log is
	// ErrUnavailable, never ErrRefused.
	ErrRefused = errors.New("refused by the log")
	// ErrTooLarge: the log will never take this message as it is (larger
	// than the stream's maximum message or header size, or than the
	// connection carries). It is also ErrRefused.
	ErrTooLarge = errors.New("too large for the log")
)

// ManifestWatcher reads a device's newest manifest only when it changed.
type ManifestWatcher interface {
	// LastManifestAfter returns the device's newest ManifestApplied if its
	// sequence is above after; isNew is false otherwise and nothing is
	// decoded (polling a large unchanged manifest costs one get). Errors:
	// ErrNotFound when there is none, a *BadMessage when it does not
	// decode, ErrUnavailable when the log cannot be reached.
	LastManifestAfter(ctx context.Context, device string, after uint64) (s Stored, isNew bool, err error)
}

// HeartbeatWriter puts a device's beat in the heartbeat bucket
// (HeartbeatBucket), replacing its last one.
type HeartbeatWriter interface {
	// PutHeartbeat stores beat under device. No bucket (fleet server
	// creates it): ErrNotFound.
	PutHeartbeat(ctx context.Context, device string, beat []byte) error
}

// ServerClock reads the log server's time, as a device's credentials may.
type ServerClock interface {
	// ServerTime returns the server's time of an answer it sent now.
	ServerTime(ctx context.Context) (time.Time, error)
}
