package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// logConn attaches to the log lazily, so an agent can start with no server
// and attach when one appears. Safe for concurrent use.
type logConn struct {
	nc     *nats.Conn
	mu     sync.Mutex
	js     jetstream.JetStream
	st     *jsstore.Store
	stream jetstream.Stream
}

func newLogConn(nc *nats.Conn) *logConn { return &logConn{nc: nc} }

// jetStream returns the JetStream context (no server round trip).
func (c *logConn) jetStream() (jetstream.JetStream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.js == nil {
		js, err := jetstream.New(c.nc)
		if err != nil {
			return nil, err
		}
		c.js = js
	}
	return c.js, nil
}

// store returns the attached store, attaching first if needed.
func (c *logConn) store(ctx context.Context) (*jsstore.Store, error) {
	js, err := c.jetStream()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil {
		return c.st, nil
	}
	if !c.nc.IsConnected() {
		return nil, fmt.Errorf("attach to the log: %w: not connected", events.ErrUnavailable)
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := jsstore.Attach(actx, js)
	if err != nil {
		return nil, err
	}
	c.st = st
	return st, nil
}

// lastManifestAfter returns the last message of device's manifest subject if
// its sequence is above after (new is false otherwise, and nothing is
// decoded: polling a large unchanged manifest costs one direct get). Errors
// as jsstore.Store.LastManifest: events.ErrNotFound when there is none, a
// *events.BadMessage when it does not decode.
func (c *logConn) lastManifestAfter(ctx context.Context, device string, after uint64) (s events.Stored, isNew bool, err error) {
	if _, err := c.store(ctx); err != nil {
		return s, false, err
	}
	c.mu.Lock()
	stream := c.stream
	c.mu.Unlock()
	if stream == nil {
		stream, err = c.js.Stream(ctx, events.Stream)
		if err != nil {
			return s, false, fmt.Errorf("manifest of %s: %w: %w", device, events.ErrUnavailable, err)
		}
		c.mu.Lock()
		c.stream = stream
		c.mu.Unlock()
	}
	raw, err := stream.GetLastMsgForSubject(ctx, events.ManifestSubject(device))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return s, false, fmt.Errorf("manifest of %s: %w", device, events.ErrNotFound)
	case err != nil:
		return s, false, fmt.Errorf("manifest of %s: %w: %w", device, events.ErrUnavailable, err)
	case raw.Sequence <= after:
		return s, false, nil
	}
	s, err = jsstore.FromRaw(raw.Subject, raw.Sequence, raw.Time, raw.Data)
	return s, err == nil, err
}
