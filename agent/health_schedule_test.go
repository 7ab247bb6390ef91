package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// scheduleLoop is a loop with n Ready containers applied at the times
// given (each with an http liveness probe), for the probe scheduler alone.
func scheduleLoop(applied ...time.Time) *loop {
	rc := reconcile.NewContainer("")
	l := &loop{a: &Agent{recs: map[string]reconcile.Reconciler{events.KindContainer: rc}}, res: map[string]*resource{}}
	for i, at := range applied {
		id := fmt.Sprintf("c%d", i)
		r := events.Resource{ID: id, Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "x",
			Health: &events.HealthSpec{Liveness: &events.Probe{HTTP: &events.HTTPProbe{URL: "http://127.0.0.1:1/"}}}}}
		x := &resource{rec: &resourceRecord{ID: id, Kind: r.Kind, Resource: r, State: fsm.Ready}}
		x.health = newHealth(&r, "d", rc, at)
		l.res[id], l.order = x, append(l.order, id)
	}
	return l
}

// TestKindHealthReadsDueSoonJoinTheBatch: a podman inspect batch takes the
// containers' own health reads due within half a period as well, so
// containers applied at different times settle into one read per period;
// probes (http here) run when due, never early, and a read due later than
// half a period waits for its time.
func TestKindHealthReadsDueSoonJoinTheBatch(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	period := kindHealthPeriod
	l := scheduleLoop(t0, t0.Add(period/4), t0.Add(period*3/4))
	now := t0.Add(time.Second) // c0's first kind read is due (1 s after its apply)
	calls := l.scheduleProbes(now)
	var kind, probes []string
	for _, c := range calls {
		for _, r := range c {
			if r.t.probe == nil {
				kind = append(kind, r.x.rec.ID)
			} else {
				probes = append(probes, r.x.rec.ID)
			}
		}
		if len(c) > 1 && c[0].t.probe != nil {
			t.Fatalf("probes batched into one call: %d runs", len(c))
		}
	}
	if fmt.Sprint(kind) != "[c0 c1]" {
		t.Fatalf("kind health reads in the batch: %v, want [c0 c1] (c2 is due more than half a period later)", kind)
	}
	if fmt.Sprint(probes) != "[c0]" {
		t.Fatalf("probes started: %v, want c0's liveness alone (the others are due later: never early)", probes)
	}
	if n, _ := kindCalls(calls); n != 1 {
		t.Fatalf("%d kind health calls, want 1 batch", n)
	}
	// both read: due together from now on, one period later
	for _, c := range calls {
		for _, r := range c {
			r.h.record(r.t, true, "running", 0, now)
		}
	}
	l.probing = 0
	// c2's read is due (8.5 s): its batch takes c0's and c1's, due at 11 s
	calls = l.scheduleProbes(now.Add(period - time.Millisecond))
	if n, reads := kindCalls(calls); n != 1 || reads != 3 {
		t.Fatalf("a period later: %d kind health calls of %d reads, want 1 of all 3", n, reads)
	}
}

// kindCalls counts the kind health calls among calls and their reads.
func kindCalls(calls [][]*probeRun) (n, reads int) {
	for _, c := range calls {
		if c[0].t.probe == nil {
			n, reads = n+1, reads+len(c)
		}
	}
	return n, reads
}
