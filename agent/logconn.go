package agent

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
)

// Log is what the agent uses of the log: it appends its outbox's events
// (already encoded), reads its manifest when it changed, puts its
// heartbeat and reads the server's time. jsstore.Lazy is one over a client
// connection that attaches when the server appears (cmd wires it in with
// WithLog). Implementations translate their errors to events' sentinels:
// events.ErrUnavailable (retry later), events.ErrRefused and
// events.ErrTooLarge (the outbox), events.ErrNotFound (no manifest, no
// heartbeat bucket).
type Log interface {
	appender
	events.ManifestWatcher
	events.HeartbeatWriter
	events.ServerClock
}

// appender is the part of the log the drainer uses.
type appender interface {
	AppendEncoded(ctx context.Context, evs []events.Encoded) error
}

// logConn is the connection's core part (hints on the manifest subject,
// connection status, the auth error a suspension leaves) and the log over it.
type logConn struct {
	nc  *nats.Conn
	log Log
}

// logConn pairs nc with the log of WithLog.
func (a *Agent) logConn(nc *nats.Conn) (*logConn, error) {
	if a.o.log == nil {
		return nil, errors.New("agent: no log: pass agent.WithLog(jsstore.NewLazy(nc)) with the connection given to Run")
	}
	return &logConn{nc: nc, log: a.o.log}, nil
}
