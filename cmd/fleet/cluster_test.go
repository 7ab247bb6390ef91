package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
)

// soak reports whether the long versions of the cluster and site tests run
// (FLEET_SOAK=1): the full figures, minutes on 2 cores.
func soak() bool { return os.Getenv("FLEET_SOAK") == "1" }

// TestClusterStreamLeaderKilledWhileAgentsConverge: `fleet server --nats
// URL,URL,URL --replicas 3` against a real 3-node cluster (nats-server
// processes), agents converging and having files tampered with, and the
// stream leader killed with SIGKILL several times (each time restarted and
// caught up before the next). At the end every agent is Ready at its last
// generation with its files right, the log holds every event once (ids
// unique, each device's events in the order it wrote them, replay verify
// clean), and a projection service that ran through the kills equals a
// clean rebuild key for key. FLEET_SOAK=1: 20 agents, 5 kills.
func TestClusterStreamLeaderKilledWhileAgentsConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end cluster run")
	}
	is := is.New(t)
	devices, kills := 6, 2
	if soak() {
		devices, kills = 20, 5
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := eventstest.StartCluster(t, 3, eventstest.ClusterOptions{})

	// fleet server against the cluster: FLEET and the heartbeat bucket R3
	rs, err := (&ServerCmd{Data: t.TempDir(), Replicas: 3, HeartbeatTTL: 30 * time.Second, natsFlag: true}).Start(ctx, &Globals{NATS: c.URLs()}, nil) // as --nats URLS
	is.NoErr(err)
	defer rs.Stop()
	opNC := c.Connect()
	opJS, _ := jetstream.New(opNC)
	ops, err := jsstore.Attach(ctx, opJS)
	is.NoErr(err)
	for _, name := range []string{events.Stream, "KV_" + events.HeartbeatBucket} {
		s, err := opJS.Stream(ctx, name)
		is.NoErr(err)
		is.Equal(s.CachedInfo().Config.Replicas, 3)
	}
	c.WaitStreamLeader(opJS, events.Stream, 30*time.Second)

	// a projection service of the test's own, through every kill
	svc, err := projections.Open(t.TempDir(), projections.WithDurable("cluster-test-live"))
	is.NoErr(err)
	defer svc.Close()
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx, ops) }()

	clock, _ := events.NewClock(events.ClockState{}, nil)
	gens := make([]int64, devices)
	// apply is an operator's fleet apply: a compare-and-set that jsstore
	// retries through an election; it returns how long it took.
	apply := func(i int, content string) time.Duration {
		t.Helper()
		dev := fmt.Sprintf("pi-%02d", i)
		m := events.Manifest{}
		for _, f := range []string{"motd", "app"} {
			m.Resources = append(m.Resources, events.Resource{ID: f, Kind: events.KindFile,
				File: &events.FileSpec{Path: "/etc/" + f, Content: content + " " + f + "\n"}})
		}
		start := time.Now()
		actx, acancel := context.WithTimeout(ctx, 60*time.Second)
		defer acancel()
		res, err := events.Apply(actx, ops, clock, dev, m, "user:ops", nil)
		if err != nil {
			t.Fatalf("apply %s: %v\n%s", dev, err, c.Log())
		}
		gens[i] = res.Generation
		return time.Since(start)
	}

	got := &committed{ids: map[string]string{}}
	roots := make([]string, devices)
	agents := make([]*agent.Handle, devices)
	for i := range devices {
		apply(i, "g1")
		roots[i] = t.TempDir()
		anc := c.Connect()
		h, err := agent.Start(ctx, anc, fmt.Sprintf("pi-%02d", i), agent.WithLog(jsstore.NewLazy(anc)), agent.WithRoot(roots[i]), agent.WithStateDir(t.TempDir()),
			agent.WithLogger(quietLog), agent.WithOnEvent(got.add), agent.WithManifestPoll(200*time.Millisecond),
			agent.WithDriftInterval(200*time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second),
			agent.WithHeartbeatInterval(time.Second))
		is.NoErr(err)
		agents[i] = h
		defer func() { _ = h.Stop() }()
	}
	rng := rand.New(rand.NewPCG(12, uint64(time.Now().UnixNano())))
	tamper := func(n int) {
		for range n {
			i := rng.IntN(devices)
			f := []string{"motd", "app"}[rng.IntN(2)]
			_ = os.WriteFile(filepath.Join(roots[i], "etc", f), []byte("tampered\n"), 0o644)
		}
	}

	for k := 1; k <= kills; k++ {
		apply(k%devices, fmt.Sprintf("g%d", k+1))
		tamper(3)
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
		leader := c.WaitStreamLeader(opJS, events.Stream, 30*time.Second)
		leader.Kill()
		tamper(3)
		took := apply((k+devices/2)%devices, fmt.Sprintf("g%d", k+1)) // a write during the election
		t.Logf("kill %d: stream leader %s killed; an apply right after it was acknowledged in %s", k, leader.Name, took.Round(time.Millisecond))
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		leader.Start()
		c.WaitStreamLeader(opJS, events.Stream, 60*time.Second) // caught up before the next kill
	}

	for i := range devices {
		apply(i, "final")
	}
	settled := func() bool {
		for i, h := range agents {
			if h.Agent.Generation() != gens[i] || h.Agent.OutboxLen() != 0 {
				return false
			}
			st := h.Agent.Status()
			if len(st) != 2 {
				return false
			}
			for _, s := range st {
				if s.State != fsm.Ready || s.Generation != gens[i] {
					return false
				}
			}
		}
		return true
	}
	deadline := time.Now().Add(90 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			for i, h := range agents {
				t.Logf("pi-%02d: generation %d (want %d), outbox %d, status %v", i, h.Agent.Generation(), gens[i], h.Agent.OutboxLen(), h.Agent.Status())
			}
			t.Fatalf("fleet not settled 90s after the last kill\n%s", c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range devices {
		for _, f := range []string{"motd", "app"} {
			b, err := os.ReadFile(filepath.Join(roots[i], "etc", f))
			is.NoErr(err)
			is.Equal(string(b), "final "+f+"\n")
		}
	}
	checkLogOnce(t, ctx, ops, got)

	// the live read models equal a clean rebuild
	last, err := ops.LastSeq(ctx)
	is.NoErr(err)
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	is.NoErr(svc.WaitFor(wctx, last))
	compareWithRebuild(t, wctx, ops, svc, last)
	cancel()
	is.NoErr(<-svcDone)
}

// checkLogOnce reads the whole log: no malformed message, every event id
// once, every event an agent committed on it, nothing else from agents,
// each device's agent events in the order the agent wrote them (ids only
// grow), and replay verify finds no violation.
func checkLogOnce(t *testing.T, ctx context.Context, st *jsstore.Store, got *committed) {
	t.Helper()
	is := is.New(t)
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	seen := map[string]int{}
	lastID := map[string]string{}
	fromAgents := 0
	for s, err := range st.Read(rctx, events.Filter{}) {
		is.NoErr(err)
		seen[s.ID]++
		if s.Type == events.TypeManifestApplied {
			continue
		}
		fromAgents++
		if prev := lastID[s.Device]; prev >= s.ID {
			t.Errorf("%s: event %s at sequence %d comes after %s: out of the order written", s.Device, s.ID, s.Seq, prev)
		}
		lastID[s.Device] = s.ID
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s is on the log %d times", id, n)
		}
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	for id, dev := range got.ids {
		if seen[id] != 1 {
			t.Errorf("event %s committed by %s is not on the log", id, dev)
		}
	}
	is.Equal(fromAgents, len(got.ids))
	rep, err := replay.Verify(st.Read(rctx, events.Filter{}), true)
	is.NoErr(err)
	for _, v := range rep.Violations {
		t.Errorf("replay verify: %+v", v)
	}
	t.Logf("%d events from agents, %d on the log, each once; replay verify clean over %d devices", len(got.ids), len(seen), rep.Devices)
}

// compareWithRebuild folds the log from sequence 1 into a fresh store and
// compares it with svc key for key.
func compareWithRebuild(t *testing.T, ctx context.Context, log projections.Log, svc *projections.Service, last uint64) {
	t.Helper()
	is := is.New(t)
	fresh, err := projections.Open(t.TempDir(), projections.WithDurable(fmt.Sprintf("rebuild-%d", time.Now().UnixNano())))
	is.NoErr(err)
	defer fresh.Close()
	fctx, fcancel := context.WithCancel(ctx)
	freshDone := make(chan error, 1)
	go func() { freshDone <- fresh.Run(fctx, log) }()
	is.NoErr(fresh.WaitFor(ctx, last))
	fcancel()
	if err := <-freshDone; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	want, err := fresh.Dump()
	is.NoErr(err)
	live, err := svc.Dump()
	is.NoErr(err)
	is.Equal(len(live), len(want))
	for k, v := range want {
		if live[k] != v {
			t.Fatalf("read model key %s differs from a clean rebuild:\n live %.300s\nclean %.300s", k, live[k], v)
		}
	}
}

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))
