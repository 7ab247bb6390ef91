package replay_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/replay"
)

func fileRes(id, content string) events.Resource {
	return events.Resource{ID: id, Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/" + id, Content: content}}
}

// TestVerifyPassesRealAgentLogs runs a real agent through what the agent
// tests do — converge, change a spec, remove and add a resource, drift and
// its correction, a restart — on a real server, and checks the resulting
// log with Verify.
func TestVerifyPassesRealAgentLogs(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	nc, err := nats.Connect(env.Server.URL(), nats.MaxReconnects(-1))
	is.NoErr(err)
	defer nc.Close()
	root, state := t.TempDir(), t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() *agent.Handle {
		h, err := agent.Start(ctx, nc, "pi-01", agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(root), agent.WithStateDir(state), agent.WithLogger(quiet),
			agent.WithManifestPoll(100*time.Millisecond), agent.WithDriftInterval(100*time.Millisecond),
			agent.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
		is.NoErr(err)
		return h
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	apply := func(rs ...events.Resource) int64 {
		res, err := events.Apply(ctx, env.Store, clock, "pi-01", events.Manifest{Resources: rs}, "user:test", nil)
		is.NoErr(err)
		return res.Generation
	}
	ready := func(h *agent.Handle, n int, gen int64) {
		deadline := time.Now().Add(15 * time.Second)
		for {
			g := h.Agent.Generation() // first: the Status read after it is of that generation or newer
			st := h.Agent.Status()
			ok := len(st) == n && g == gen && h.Agent.OutboxLen() == 0
			for _, s := range st {
				ok = ok && s.State == fsm.Ready
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("agent not Ready at generation %d: %+v", gen, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	h := start()
	gen := apply(fileRes("motd", "v1\n"), fileRes("banner", "b\n"), fileRes("issue", "i\n"))
	ready(h, 3, gen)
	gen = apply(fileRes("motd", "v2\n"), fileRes("banner", "b\n"), fileRes("hosts", "h\n")) // change, keep, remove, add
	ready(h, 3, gen)
	is.NoErr(os.WriteFile(filepath.Join(root, "etc", "motd"), []byte("tampered\n"), 0o644))
	drifts := func() int {
		n := 0
		for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01", Types: []string{events.TypeDriftDetected}}) {
			is.NoErr(err)
			if s.Resource == "motd" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(10 * time.Second); drifts() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no drift recorded for the tampered file")
		}
	}
	ready(h, 3, gen) // and corrected
	is.NoErr(h.Stop())
	h = start() // a restart from the agent's state
	gen = apply(fileRes("motd", "v3\n"), fileRes("hosts", "h\n"))
	ready(h, 2, gen)
	is.NoErr(h.Stop())

	rep, err := replay.Verify(env.Store.Read(ctx, events.Filter{}), true)
	is.NoErr(err)
	if !rep.OK() {
		t.Fatalf("%s: %v", rep.SummaryLine(), rep.Violations)
	}
	is.True(rep.Events > 20)
	t.Log(rep.SummaryLine())
}
