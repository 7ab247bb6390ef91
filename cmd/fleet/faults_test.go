package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/projections"
)

// TestFaultServerHelper is the JetStream server of the fault test, run as a
// child process so that it can be killed with SIGKILL. It does nothing in a
// normal run.
func TestFaultServerHelper(t *testing.T) {
	dir, listen := os.Getenv("FLEET_FAULT_DIR"), os.Getenv("FLEET_FAULT_LISTEN")
	if dir == "" || listen == "" {
		t.Skip("child process of TestServerRestartedTenTimesWhileTenAgentsConvergeAndDrift")
	}
	srv, err := embedded.Start(embedded.Options{Dir: dir, Listen: listen}) // fsync before ack, the default
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.Stop()
}

// faultServer runs the helper as a child process on a fixed address.
type faultServer struct {
	t      *testing.T
	dir    string
	listen string
	cmd    *exec.Cmd
}

func (s *faultServer) start() {
	s.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFaultServerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLEET_FAULT_DIR="+s.dir, "FLEET_FAULT_LISTEN="+s.listen)
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.listen, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("server on %s not up after 20s", s.listen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM (graceful) or SIGKILL.
func (s *faultServer) stop(kill bool) {
	if s.cmd == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = s.cmd.Process.Signal(sig)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type committed struct {
	mu  sync.Mutex
	ids map[string]string // event id -> device
}

func (c *committed) add(evs []events.Event) {
	c.mu.Lock()
	for _, e := range evs {
		c.ids[e.ID] = e.Device
	}
	c.mu.Unlock()
}

// TestServerRestartedTenTimesWhileTenAgentsConvergeAndDrift: ten agents
// converge and have their files tampered with (online and while the server
// is down) while the server is stopped ten times, every other time with
// SIGKILL, and the operator applies new generations in between. At the end
// every agent's outbox is drained, every event an agent committed is on the
// log exactly once, and the projection service that ran through all of it
// holds read models equal to a clean rebuild from sequence 1.
func TestServerRestartedTenTimesWhileTenAgentsConvergeAndDrift(t *testing.T) {
	is := is.New(t)
	const devices, rounds = 10, 10
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := &faultServer{t: t, dir: t.TempDir(), listen: freeAddr(t)}
	srv.start()
	t.Cleanup(func() { srv.stop(true) })
	url := "nats://" + srv.listen
	reconnecting := []nats.Option{nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(50 * time.Millisecond), nats.ReconnectBufSize(-1)}

	// the operator and the projection service
	opNC, err := nats.Connect(url, reconnecting[:3]...) // requests wait in the reconnect buffer
	is.NoErr(err)
	defer opNC.Close()
	opJS, _ := jetstream.New(opNC)
	ops, err := jsstore.Open(ctx, opJS, jsstore.Config{})
	is.NoErr(err)
	_, err = opJS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.HeartbeatBucket, History: 1, TTL: time.Minute})
	is.NoErr(err)
	svc, err := projections.Open(t.TempDir())
	is.NoErr(err)
	defer svc.Close()
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(ctx, ops) }()

	clock, _ := events.NewClock(events.ClockState{}, nil)
	gens := make([]int64, devices)
	apply := func(i int, content string) {
		t.Helper()
		dev := fmt.Sprintf("pi-%02d", i)
		m := events.Manifest{}
		for _, f := range []string{"motd", "app", "cron"} {
			m.Resources = append(m.Resources, events.Resource{ID: f, Kind: events.KindFile,
				File: &events.FileSpec{Path: "/etc/" + f, Content: content + " " + f + "\n"}})
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			res, err := events.Apply(actx, ops, clock, dev, m, "user:ops", nil)
			acancel()
			if err == nil {
				gens[i] = res.Generation
				return
			}
			if !errors.Is(err, events.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, events.ErrConflict) &&
				!errors.Is(err, nats.ErrReconnectBufExceeded) {
				t.Fatalf("apply %s: %v", dev, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("apply %s: still failing after 30s: %v", dev, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// ten agents, each with its own connection, root and state
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	got := &committed{ids: map[string]string{}}
	roots := make([]string, devices)
	agents := make([]*agent.Handle, devices)
	for i := range devices {
		apply(i, "g1")
		roots[i] = t.TempDir()
		nc, err := nats.Connect(url, reconnecting...)
		is.NoErr(err)
		defer nc.Close()
		h, err := agent.Start(ctx, nc, fmt.Sprintf("pi-%02d", i), agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(roots[i]), agent.WithStateDir(t.TempDir()),
			agent.WithLogger(quiet), agent.WithOnEvent(got.add), agent.WithManifestPoll(200*time.Millisecond),
			agent.WithDriftInterval(200*time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second),
			agent.WithHeartbeatInterval(time.Second))
		is.NoErr(err)
		agents[i] = h
		defer func() { _ = h.Stop() }()
	}
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	tamper := func(n int) {
		for range n {
			i := rng.IntN(devices)
			f := []string{"motd", "app", "cron"}[rng.IntN(3)]
			_ = os.WriteFile(filepath.Join(roots[i], "etc", f), []byte("tampered\n"), 0o644)
		}
	}

	kills := 0
	for r := 1; r <= rounds; r++ {
		apply(r%devices, fmt.Sprintf("g%d", r+1))
		apply((r+5)%devices, fmt.Sprintf("g%d", r+1))
		tamper(3)
		time.Sleep(time.Duration(200+rng.IntN(300)) * time.Millisecond)
		kill := r%2 == 0
		if kill {
			kills++
		}
		srv.stop(kill)
		tamper(3) // drift while the server is away: corrected offline, recorded in the outbox
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
		srv.start()
	}

	// a last generation for everyone, then wait for the fleet to settle
	for i := range devices {
		apply(i, "final")
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		settled := true
		for i, h := range agents {
			st := h.Agent.Status()
			if h.Agent.Generation() != gens[i] || len(st) != 3 || h.Agent.OutboxLen() != 0 {
				settled = false
				break
			}
			for _, s := range st {
				if s.State != fsm.Ready || s.Generation != gens[i] {
					settled = false
				}
			}
		}
		if settled {
			break
		}
		if time.Now().After(deadline) {
			for i, h := range agents {
				t.Logf("pi-%02d: generation %d (want %d), outbox %d, status %v", i, h.Agent.Generation(), gens[i], h.Agent.OutboxLen(), h.Agent.Status())
			}
			t.Fatal("fleet not settled 90s after the last restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range devices {
		for _, f := range []string{"motd", "app", "cron"} {
			b, err := os.ReadFile(filepath.Join(roots[i], "etc", f))
			is.NoErr(err)
			is.Equal(string(b), "final "+f+"\n")
		}
	}

	// every committed event on the log exactly once; nothing else from the agents
	seen := map[string]int{}
	fromAgents := 0
	rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
	defer rcancel()
	for st, err := range ops.Read(rctx, events.Filter{}) {
		is.NoErr(err) // no malformed message on the log
		seen[st.ID]++
		if st.Type != events.TypeManifestApplied {
			fromAgents++
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s is on the log %d times", id, n)
		}
	}
	got.mu.Lock()
	lost := 0
	for id, dev := range got.ids {
		if seen[id] != 1 {
			lost++
			t.Errorf("event %s committed by %s is not on the log", id, dev)
		}
	}
	committedN := len(got.ids)
	got.mu.Unlock()
	is.Equal(lost, 0)
	is.Equal(fromAgents, committedN) // the log holds what the agents committed, nothing more
	last, err := ops.LastSeq(ctx)
	is.NoErr(err)
	t.Logf("%d restarts (%d with SIGKILL), %d events from %d agents, %d messages on the log", rounds, kills, committedN, devices, last)

	// the live read models equal a clean rebuild
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	is.NoErr(svc.WaitFor(wctx, last))
	fresh, err := projections.Open(t.TempDir())
	is.NoErr(err)
	defer fresh.Close()
	fctx, fcancel := context.WithCancel(ctx)
	freshDone := make(chan error, 1)
	go func() { freshDone <- fresh.Run(fctx, ops) }()
	is.NoErr(fresh.WaitFor(wctx, last))
	fcancel()
	is.NoErr(<-freshDone)
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
	cancel()
	is.NoErr(<-svcDone)
}

// TestFaultAgentHelper is the agent of the disk-full test, run as a child
// process. It does nothing in a normal run.
func TestFaultAgentHelper(t *testing.T) {
	url, root, state := os.Getenv("FLEET_FAULT_AGENT_NATS"), os.Getenv("FLEET_FAULT_AGENT_ROOT"), os.Getenv("FLEET_FAULT_AGENT_STATE")
	if url == "" {
		t.Skip("child process of TestAgentStateDiskFullStopsTheAgentAndItResumes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New("pi-01", agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(root), agent.WithStateDir(state), agent.WithDriftInterval(100*time.Millisecond),
		agent.WithManifestPoll(100*time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Fprintln(os.Stderr, "AGENT ERROR:", err)
		os.Exit(3)
	}
	if err := a.Run(ctx, nc); err != nil {
		fmt.Fprintln(os.Stderr, "AGENT ERROR:", err)
		os.Exit(3)
	}
}

// TestAgentStateDiskFullStopsTheAgentAndItResumes fills the filesystem of
// the agent's state (a small tmpfs) while it converges: the agent exits
// non-zero with one line that names the full disk and what to do (no stack
// dump), and when space
// returns the restarted agent opens its store (not corrupt) and converges,
// every event on the log once. Needs permission to mount a tmpfs (root);
// skipped otherwise.
func TestAgentStateDiskFullStopsTheAgentAndItResumes(t *testing.T) {
	is := is.New(t)
	state := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", state).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the agent's state (%v: %s): run as root to test a full disk", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", state).Run() })
	env := eventstest.Start(t, true)
	ctx := context.Background()
	root := t.TempDir()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	apply := func(content string) int64 {
		m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"" + content + "\"}\n"))
		is.NoErr(err)
		res, err := events.Apply(ctx, env.Store, clock, "pi-01", m, "user:ops", nil)
		is.NoErr(err)
		return res.Generation
	}
	var stderr syncBuffer
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFaultAgentHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FLEET_FAULT_AGENT_NATS="+env.Server.URL(), "FLEET_FAULT_AGENT_ROOT="+root, "FLEET_FAULT_AGENT_STATE="+state)
		cmd.Stderr = &stderr
		is.NoErr(cmd.Start())
		return cmd
	}
	motd := filepath.Join(root, "etc/motd")
	content := func() string { b, _ := os.ReadFile(motd); return string(b) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; agent said: %s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	apply("v1")
	cmd := start()
	wait("generation 1 applied", func() bool { return content() == "v1" })
	time.Sleep(300 * time.Millisecond) // let it settle and drain

	// fill the disk, then give the agent something to record
	filler, err := os.Create(filepath.Join(state, "filler"))
	is.NoErr(err)
	chunk := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(chunk); err != nil {
			is.True(errors.Is(err, syscall.ENOSPC))
			break
		}
	}
	_ = filler.Sync()
	// Pebble's preallocated log absorbs small writes: apply big generations
	// until the agent cannot store one
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	big := strings.Repeat("x", 600<<10)
	var lastGen int64
	deadline := time.After(60 * time.Second)
wait:
	for i := 0; ; i++ {
		lastGen = apply(fmt.Sprintf("big%d %s", i, big))
		select {
		case err := <-exited:
			is.True(err != nil) // a non-zero exit, so a supervisor restarts it
			break wait
		case <-time.After(500 * time.Millisecond):
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("agent still running 60s after its disk filled up; it said: %s", stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "no space left on device") { // the error says why
		t.Fatalf("the agent stopped without saying the disk is full; it said: %s", stderr.String())
	}
	is.True(strings.Contains(stderr.String(), "free space"))  // and what to do
	is.True(!strings.Contains(stderr.String(), "goroutine ")) // as a message, not a stack dump
	t.Logf("agent stopped at generation %d of the log: %s", lastGen, strings.TrimSpace(stderr.String()))

	// space returns: the agent opens its store and converges
	filler.Close()
	is.NoErr(os.Remove(filepath.Join(state, "filler")))
	cmd = start()
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	gen2 := apply("v2")
	wait("the next generation applied after space returned", func() bool { return content() == "v2" })
	wait("Ready at that generation on the log", func() bool {
		for st, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01", Types: []string{events.TypeStatusChanged}}) {
			if err == nil && st.Generation == gen2 {
				p, _ := st.Payload()
				if p.(*events.StatusChanged).To == "Ready" {
					return true
				}
			}
		}
		return false
	})
	seen := map[string]bool{}
	for st, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
		is.NoErr(err)
		is.True(!seen[st.ID]) // every event once
		seen[st.ID] = true
	}
	is.True(!strings.Contains(stderr.String(), "corrupt"))
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
