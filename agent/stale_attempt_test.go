package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
)

// TestStaleAttemptNeverTakesTheLogBackwards: a slow exec attempt of
// generation 1 still runs when generation 2 changes the resource; its
// outcome arrives after generation 2's events. The log must not go back to
// generation 1 after them (replay --verify's generation rule), and
// generation 2 converges.
func TestStaleAttemptNeverTakesTheLogBackwards(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	started, release := filepath.Join(dir, "started"), filepath.Join(dir, "release")
	r := newRig(t, "st-01", agent.WithAllowExec(true))
	// Generation 1: says it started, then waits (up to 20 s) for release.
	slow := events.Resource{ID: "job", Kind: events.KindExec, Exec: &events.ExecSpec{Timeout: "30s",
		Argv: []string{"sh", "-c", `touch "$0"; i=0; while [ ! -e "$1" ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done`, started, release}}}
	apply(t, r.env, "st-01", slow)
	waitFor(t, 10*time.Second, "generation 1's attempt running", func() bool { _, err := os.Stat(started); return err == nil })
	fast := events.Resource{ID: "job", Kind: events.KindExec, Exec: &events.ExecSpec{Argv: []string{"true"}}}
	gen2 := apply(t, r.env, "st-01", fast)
	waitFor(t, 10*time.Second, "generation 2 taken", func() bool { return r.h.Agent.Generation() == gen2 })
	time.Sleep(200 * time.Millisecond) // let the loop record generation 2's spec change first
	is.NoErr(os.WriteFile(release, nil, 0o644))
	waitFor(t, 15*time.Second, "generation 2 Ready, drained", func() bool {
		return allReady(r.h.Agent, 1, gen2) && r.h.Agent.OutboxLen() == 0
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := replay.Verify(r.env.Store.Read(ctx, events.Filter{}), true)
	is.NoErr(err)
	for _, v := range rep.Violations {
		t.Errorf("replay --verify: %+v", v)
	}
	log := deviceLog(t, r.env, "st-01")
	checkLog(t, log)
	var last int64
	for _, s := range log {
		if s.Resource == "job" {
			if s.Generation < last {
				t.Errorf("%s %s for generation %d after generation %d", s.Type, s.ID, s.Generation, last)
			}
			last = max(last, s.Generation)
		}
	}
}
