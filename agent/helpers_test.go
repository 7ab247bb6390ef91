package agent_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func fileRes(id, path, content string) events.Resource {
	return events.Resource{ID: id, Kind: events.KindFile, File: &events.FileSpec{Path: path, Content: content}}
}

// apply appends the next generation of device's manifest.
func apply(t testing.TB, env *eventstest.Env, device string, rs ...events.Resource) int64 {
	t.Helper()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	res, err := events.Apply(context.Background(), env.Store, clock, device, events.Manifest{Resources: rs}, "user:test", nil)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return res.Generation
}

// connect opens an agent-style connection: reconnects forever.
func connect(t testing.TB, env *eventstest.Env) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(env.Server.URL(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(50*time.Millisecond), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// recorder keeps every event the agent committed locally, in order.
type recorder struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorder) add(evs []events.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, evs...)
	r.mu.Unlock()
}

func (r *recorder) all() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.evs...)
}

type rig struct {
	env   *eventstest.Env
	nc    *nats.Conn
	root  string
	state string
	rec   *recorder
	h     *agent.Handle
}

func newRig(t testing.TB, device string, opts ...agent.Option) *rig {
	t.Helper()
	env := eventstest.Start(t, true)
	r := &rig{env: env, root: t.TempDir(), state: t.TempDir(), rec: &recorder{}}
	r.nc = connect(t, env)
	r.start(t, device, opts...)
	return r
}

func (r *rig) start(t testing.TB, device string, opts ...agent.Option) {
	t.Helper()
	base := []agent.Option{agent.WithLog(jsstore.NewLazy(r.nc)), agent.WithRoot(r.root), agent.WithStateDir(r.state), agent.WithLogger(quiet),
		agent.WithOnEvent(r.rec.add), agent.WithManifestPoll(200 * time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second)}
	h, err := agent.Start(context.Background(), r.nc, device, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	t.Cleanup(func() { _ = h.Stop() })
}

func (r *rig) path(p string) string { return filepath.Join(r.root, p) }

// waitFor polls cond until it holds or the timeout passes.
var waitFor = eventstest.WaitFor

// allReady reports whether the agent has exactly n resources, all Ready at generation gen.
func allReady(a *agent.Agent, n int, gen int64) bool {
	st := a.Status()
	if len(st) != n || a.Generation() != gen {
		return false
	}
	for _, s := range st {
		if s.State != fsm.Ready || s.Generation != gen {
			return false
		}
	}
	return true
}

// deviceLog reads every event of device from the log.
func deviceLog(t testing.TB, env *eventstest.Env, device string) []events.Stored {
	t.Helper()
	var out []events.Stored
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for s, err := range env.Store.Read(ctx, events.Filter{Device: device}) {
		if err != nil {
			t.Fatalf("read log: %v", err)
		}
		out = append(out, s)
	}
	return out
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

// checkLog asserts what every agent log must satisfy: no duplicate event id,
// ids and times increasing in log order for the agent's events, and only
// transitions the fsm table allows, per resource.
func checkLog(t testing.TB, log []events.Stored) {
	t.Helper()
	is := is.NewRelaxed(t)
	ids := map[string]bool{}
	state := map[string]fsm.State{}
	var lastID string
	var lastAt time.Time
	for _, s := range log {
		is.True(!ids[s.ID]) // no duplicate event id
		ids[s.ID] = true
		if s.Type == events.TypeManifestApplied {
			continue
		}
		if s.ID <= lastID || !s.At.After(lastAt) {
			t.Errorf("event %s (%s) at %s does not follow %s at %s", s.ID, s.Type, s.At, lastID, lastAt)
		}
		lastID, lastAt = s.ID, s.At
		if s.Type != events.TypeStatusChanged {
			continue
		}
		p, err := s.Payload()
		is.NoErr(err)
		sc := p.(*events.StatusChanged)
		from, to := fsm.State(sc.From), fsm.State(sc.To)
		if from != state[s.Resource] {
			t.Errorf("resource %s: StatusChanged from %q, but it was %q", s.Resource, from, state[s.Resource])
		}
		if !fsm.Valid(from, to) {
			t.Errorf("resource %s: illegal transition %q -> %q", s.Resource, from, to)
		}
		state[s.Resource] = to
		if to == fsm.Removed {
			state[s.Resource] = fsm.None
		}
	}
}

// ofType filters a log.
func ofType(log []events.Stored, typ, resource string) []events.Stored {
	var out []events.Stored
	for _, s := range log {
		if s.Type == typ && (resource == "" || s.Resource == resource) {
			out = append(out, s)
		}
	}
	return out
}
