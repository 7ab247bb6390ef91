package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestDrainGathersAPassIntoOneBatch: the events of one manifest's pass
// (five files: Reconciling, then, a reconcile later, Ready and the
// attempts' records) reach the log in one atomic batch, not one a commit.
// The gather window is widened here so that a slow test machine's
// reconciles fit in it: what is tested is the gathering, not the default
// window's tuning (BENCHMARKS.md has that).
func TestDrainGathersAPassIntoOneBatch(t *testing.T) {
	is := is.New(t)
	pass, got := gatherPass(t, 500*time.Millisecond, 5*time.Second, 0)
	is.True(pass >= 10)        // Reconciling and Ready for each of five files, at least
	is.Equal(got, []int{pass}) // in one batch
}

// TestDrainGatherWaitsOutARunningReconcile: a reconcile that takes far
// longer than the quiet spell (150 ms against 20) still has its Ready go
// out with its Reconciling: the drain waits while a reconciler call runs,
// not only while commits come.
func TestDrainGatherWaitsOutARunningReconcile(t *testing.T) {
	is := is.New(t)
	pass, got := gatherPass(t, 20*time.Millisecond, 5*time.Second, 150*time.Millisecond)
	is.True(pass >= 10)
	is.Equal(got, []int{pass})
}

// slowApply is a reconciler whose Apply takes d longer than the one it wraps.
type slowApply struct {
	reconcile.Reconciler
	d time.Duration
}

func (s slowApply) Apply(ctx context.Context, t reconcile.Target) (reconcile.Result, error) {
	time.Sleep(s.d)
	return s.Reconciler.Apply(ctx, t)
}

// gatherPass starts an agent with the gather window quiet/max (and every
// file reconcile slowed by slow), applies five files once it has sent its
// start, and returns how many events of that generation the log holds and
// the sizes of the batches the drain sent them in.
func gatherPass(t *testing.T, quiet, max, slow time.Duration) (int, []int) {
	t.Helper()
	is := is.New(t)
	oldQ, oldM := gatherQuiet, gatherMax
	gatherQuiet, gatherMax = quiet, max
	t.Cleanup(func() { gatherQuiet, gatherMax = oldQ, oldM })
	env := eventstest.Start(t, true)
	var mu sync.Mutex
	var batches []int
	published := func() []int { mu.Lock(); defer mu.Unlock(); return append([]int(nil), batches...) }
	root, state := t.TempDir(), t.TempDir()
	opts := []Option{WithLog(jsstore.NewLazy(env.Conn)), WithStateDir(state), WithRoot(root),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithOnPublished(func(n int) { mu.Lock(); batches = append(batches, n); mu.Unlock() })}
	if slow > 0 {
		recs := reconcile.Defaults(reconcile.Options{Root: root, StateDir: state})
		is.Equal(recs[0].Kind(), events.KindFile)
		recs[0] = slowApply{recs[0], slow}
		opts = append(opts, WithReconcilers(recs...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := Start(ctx, env.Conn, "pi-01", opts...)
	is.NoErr(err)
	t.Cleanup(func() { cancel(); _ = h.Wait() })
	eventstest.WaitFor(t, 15*time.Second, "the start's events published", func() bool { return h.Agent.OutboxLen() == 0 && len(published()) > 0 })
	before := len(published())

	var rs []events.Resource
	for i := range 5 {
		rs = append(rs, events.Resource{ID: fmt.Sprintf("f%d", i), Kind: events.KindFile,
			File: &events.FileSpec{Path: filepath.Join("/etc", fmt.Sprintf("f%d", i)), Content: "v1"}})
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	res, err := events.Apply(ctx, env.Store, clock, "pi-01", events.Manifest{Resources: rs}, "user:test", nil)
	is.NoErr(err)
	pass := func() (n, ready int) {
		for st, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
			if err != nil || st.Generation != res.Generation || st.Type == events.TypeManifestApplied {
				continue
			}
			n++
			if p, _ := st.Payload(); st.Type == events.TypeStatusChanged && p.(*events.StatusChanged).To == "Ready" {
				ready++
			}
		}
		return n, ready
	}
	eventstest.WaitFor(t, 30*time.Second, "every file Ready on the log", func() bool { _, ready := pass(); return ready == 5 })
	n, _ := pass()
	got := published()[before:]
	t.Logf("the pass's %d events went out in batches of %v", n, got)
	return n, got
}
