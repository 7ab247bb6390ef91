package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// indexGuard holds the time-travel index back from a log that went
// backwards: it compares the stream with the index's checkpoint before the
// index follows the log and then every projections.LogCheckInterval, and
// stops the index's follower on a problem, which /healthz then reports.
type indexGuard struct {
	x       *timetravel.Index
	dataDir string

	mu     sync.Mutex
	reason string
	first  uint64
	last   uint64
}

// check compares once; it returns the problem, or "".
func (g *indexGuard) check(ctx context.Context, js jetstream.JetStream) string {
	cp := g.x.Checkpoint()
	s, err := js.Stream(ctx, events.Stream)
	if err != nil {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.reason // unavailable: not a verdict on the log
	}
	st := s.CachedInfo().State
	reason := projections.CheckLog("the time-travel index", st.FirstSeq, st.LastSeq, st.Msgs, cp)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.first, g.last = st.FirstSeq, st.LastSeq
	if g.reason == "" {
		g.reason = reason
	}
	return g.reason
}

// follow runs the index's follower until ctx is done or the guard finds a
// problem; it does not start on a log that already went backwards.
func (g *indexGuard) follow(ctx context.Context, js jetstream.JetStream, follow func(context.Context) error) error {
	if g.reason != "" || g.check(ctx, js) != "" {
		<-ctx.Done()
		return nil
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(projections.LogCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-fctx.Done():
				return
			case <-t.C:
			}
			if g.check(fctx, js) != "" {
				cancel()
				return
			}
		}
	}()
	err := follow(fctx)
	<-fctx.Done()
	if ctx.Err() == nil {
		<-ctx.Done() // halted: wait for the server to stop
	}
	return err
}

// health is the index's /healthz check.
func (g *indexGuard) health() api.Check {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := api.Check{Name: "time travel", OK: g.reason == "",
		Detail: map[string]uint64{"checkpoint": g.x.Checkpoint(), "streamFirst": g.first, "streamLast": g.last}}
	if !c.OK {
		c.Reason = g.reason
		c.Action = fmt.Sprintf("restore the data directory from a backup, or stop the server and remove %s: "+
			"the index is built again from the log on start", filepath.Join(g.dataDir, "timetravel"))
	}
	return c
}
