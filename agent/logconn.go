package agent

import (
	"context"
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
	nc *nats.Conn
	mu sync.Mutex
	js jetstream.JetStream
	st *jsstore.Store
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
