package jsstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// Limits are the sizes a message must fit to be stored: the stream's
// MaxMsgSize (headers and body together, as the server counts them) and the
// connection's max payload (what the server lets this client send).
type Limits struct {
	MaxMsgSize int64 // the stream's; <= 0: no stream limit
	MaxPayload int64 // the connection's; <= 0: unknown
}

// batchHeaderBytes is what an atomic batch adds to each message's headers
// at most: Nats-Batch-Id (a 22-character nuid), Nats-Batch-Sequence (up
// to MaxBatch) and Nats-Batch-Commit on the last.
var batchHeaderBytes = len("Nats-Batch-Id: \r\n") + 22 +
	len("Nats-Batch-Sequence: \r\n") + len(strconv.Itoa(MaxBatch)) +
	len("Nats-Batch-Commit: 1\r\n")

// Limits reads the stream's and the connection's limits now.
func (s *Store) Limits(ctx context.Context) (Limits, error) {
	st, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return Limits{}, fmt.Errorf("stream %s limits: %w", events.Stream, unavailable(err))
	}
	l := Limits{MaxMsgSize: int64(st.CachedInfo().Config.MaxMsgSize)}
	if nc := s.js.Conn(); nc != nil {
		l.MaxPayload = nc.MaxPayload()
	}
	return l, nil
}

// MsgSize is the size the server counts for e's message when it is sent in
// an atomic batch (the largest form fleet sends): its headers, with the
// batch headers, and its body.
func MsgSize(e events.Event) (int, error) {
	m, err := Msg(e)
	if err != nil {
		return 0, err
	}
	hdr := len("NATS/1.0\r\n") + len("\r\n") + batchHeaderBytes
	for k, vs := range m.Header {
		for _, v := range vs {
			hdr += len(k) + len(strings.TrimSpace(v)) + 4
		}
	}
	return hdr + len(m.Data), nil
}

// Check refuses (with events.ErrInvalid) an event whose message would not
// fit: the error names the event, its size with headers and the limit.
func (l Limits) Check(e events.Event) error {
	n, err := MsgSize(e)
	if err != nil {
		return err
	}
	if l.MaxMsgSize > 0 && int64(n) > l.MaxMsgSize {
		return fmt.Errorf("%w: event %s (%s of %s) is %d bytes with its headers: the stream %s takes at most %d (max_msg_size)",
			events.ErrInvalid, e.ID, e.Type, e.Device, n, events.Stream, l.MaxMsgSize)
	}
	if l.MaxPayload > 0 && int64(n) > l.MaxPayload {
		return fmt.Errorf("%w: event %s (%s of %s) is %d bytes with its headers: the server takes at most %d from this connection (max_payload)",
			events.ErrInvalid, e.ID, e.Type, e.Device, n, l.MaxPayload)
	}
	return nil
}
