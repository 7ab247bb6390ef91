package agent

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// drainCheck is how often watchConnection looks whether the outbox has
// drained after the connection came back.
const drainCheck = 100 * time.Millisecond

// refusedCheck is how often watchConnection looks, while the connection is
// down, whether the server refuses the device's credentials.
const refusedCheck = 500 * time.Millisecond

// watchConnection logs, at info, each change of the connection to the
// server: when it is lost (with the error and the events the outbox holds)
// and when it is back (how long it was away, the events the outbox holds),
// then, once the outbox is empty again, how many events it drained. One
// line per change, never one per reconnect attempt: the status listener
// wakes it, and it logs only when connected-or-not flips.
func (a *Agent) watchConnection(ctx context.Context, nc *nats.Conn) {
	ch := nc.StatusChanged(nats.CONNECTED, nats.RECONNECTING, nats.DISCONNECTED)
	defer nc.RemoveStatusListener(ch)
	up := nc.IsConnected()
	lostAt := time.Now()
	if !up {
		a.log.Info("connection to the server not up yet; converging and recording locally until it is",
			withErr(nc.LastError(), "outbox", a.OutboxLen())...)
	}
	var draining <-chan time.Time // set while the outbox drains after a reconnect
	var refused <-chan time.Time  // set while the connection is down: look whether reconnects are refused
	var backAt time.Time
	var sent0 int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		case <-refused:
			refused = nil
			if !up {
				if err := nc.LastError(); credentialsError(err) {
					a.sayRefused(err)
				} else {
					refused = time.After(refusedCheck)
				}
			}
			continue
		case <-draining:
			if a.OutboxLen() > 0 {
				draining = time.After(drainCheck)
				continue
			}
			draining = nil
			if n := a.published.Load() - sent0; n > 0 {
				a.log.Info("outbox: drained after the reconnect", "events", n, "took", time.Since(backAt).Round(time.Millisecond))
			}
			continue
		}
		if now := nc.IsConnected(); now != up {
			up = now
			if !up {
				lostAt, draining, refused = time.Now(), nil, time.After(refusedCheck)
				a.log.Info("connection to the server lost; converging and recording locally until it is back",
					withErr(nc.LastError(), "outbox", a.OutboxLen())...)
				continue
			}
			backAt, sent0, refused = time.Now(), a.published.Load(), nil
			a.refusedSaid.Store(false)
			a.log.Info("connection to the server back; sending what was recorded meanwhile",
				"server", nc.ConnectedUrlRedacted(), "away", backAt.Sub(lostAt).Round(time.Millisecond), "outbox", a.OutboxLen())
			draining = time.After(drainCheck)
		}
	}
}

// withErr is args with "err" added when err is not nil (a server that shut
// down cleanly leaves none).
func withErr(err error, args ...any) []any {
	if err != nil {
		args = append(args, "err", err)
	}
	return args
}
