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
	oldQ, oldM := gatherQuiet, gatherMax
	gatherQuiet, gatherMax = 500*time.Millisecond, 5*time.Second
	t.Cleanup(func() { gatherQuiet, gatherMax = oldQ, oldM })
	env := eventstest.Start(t, true)
	var mu sync.Mutex
	var batches []int
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h, err := Start(ctx, env.Conn, "pi-01", WithLog(jsstore.NewLazy(env.Conn)), WithStateDir(t.TempDir()), WithRoot(root),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
		WithOnPublished(func(n int) { mu.Lock(); batches = append(batches, n); mu.Unlock() }))
	is.NoErr(err)
	defer func() { cancel(); _ = h.Wait() }()
	eventstest.WaitFor(t, 15*time.Second, "the start's events published", func() bool { return h.Agent.OutboxLen() == 0 && len(published(&mu, batches)) > 0 })
	mu.Lock()
	before := len(batches)
	mu.Unlock()

	var rs []events.Resource
	for i := range 5 {
		rs = append(rs, events.Resource{ID: fmt.Sprintf("f%d", i), Kind: events.KindFile,
			File: &events.FileSpec{Path: filepath.Join("/etc", fmt.Sprintf("f%d", i)), Content: "v1"}})
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	res, err := events.Apply(ctx, env.Store, clock, "pi-01", events.Manifest{Resources: rs}, "user:test", nil)
	is.NoErr(err)
	var pass int
	eventstest.WaitFor(t, 30*time.Second, "every file Ready on the log", func() bool {
		n, ready := 0, 0
		for st, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
			if err != nil || st.Generation != res.Generation || st.Type == events.TypeManifestApplied {
				continue
			}
			n++
			if p, _ := st.Payload(); st.Type == events.TypeStatusChanged && p.(*events.StatusChanged).To == "Ready" {
				ready++
			}
		}
		return ready == 5 && n > 0
	})
	for st, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
		if err == nil && st.Generation == res.Generation && st.Type != events.TypeManifestApplied {
			pass++
		}
	}
	got := published(&mu, batches)[before:]
	t.Logf("the pass's %d events went out in batches of %v", pass, got)
	is.True(pass >= 10)        // Reconciling and Ready for each of five files, at least
	is.Equal(got, []int{pass}) // in one batch
}

func published(mu *sync.Mutex, b []int) []int {
	mu.Lock()
	defer mu.Unlock()
	return append([]int(nil), b...)
}
