package agent_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestGenerationNeverAheadOfStatus checks that a reader who sees a new
// generation from Generation() and then reads Status() sees the statuses of
// that generation, never the old ones: a test (or a tool) that waits for
// "generation N, all Ready" must not be satisfied by the previous
// generation's Ready statuses before the agent even started on N.
func TestGenerationNeverAheadOfStatus(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	gen := apply(t, r.env, "pi-01", threeFiles("v0")...)
	waitFor(t, 10*time.Second, "gen Ready", func() bool { return allReady(r.h.Agent, 3, gen) })

	var stop atomic.Bool
	bad := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			g := r.h.Agent.Generation()
			for id, s := range r.h.Agent.Status() {
				if s.Generation < g {
					select {
					case bad <- fmt.Sprintf("Generation() %d, then Status()[%s] at generation %d (%s)", g, id, s.Generation, s.State):
					default:
					}
					return
				}
			}
		}
	}()
	for i := 1; i <= 5; i++ {
		gen = apply(t, r.env, "pi-01", threeFiles(fmt.Sprintf("v%d", i))...)
		waitFor(t, 10*time.Second, "gen Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	}
	stop.Store(true)
	<-done
	select {
	case msg := <-bad:
		t.Fatal(msg)
	default:
	}
	is.Equal(r.h.Agent.Generation(), gen)
}
