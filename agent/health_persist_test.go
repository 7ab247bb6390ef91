package agent

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// TestProbeStateSurvivesAnAgentRestart: a Ready container's liveness has
// failed past its threshold three times (restarts 1, 2 and 4 s apart), its
// fourth restart is due, and readiness failed twice of three. The agent is
// closed and opened again on the same store: the restarts, the backoff
// (the next restart waits 8 s, not 1 s), the restart due and the probes'
// runs are what they were. A steady healthy resource writes nothing more.
func TestProbeStateSurvivesAnAgentRestart(t *testing.T) {
	state, root := t.TempDir(), t.TempDir()
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	open := func() (*Agent, *loop) {
		a, err := New("hp-01", WithStateDir(state), WithRoot(root), quiet)
		if err != nil {
			t.Fatal(err)
		}
		return a, newLoop(a)
	}
	res := events.Resource{ID: "web", Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "nginx:1.27",
		Health: &events.HealthSpec{
			Readiness: &events.Probe{TCP: &events.TCPProbe{Port: 1}, FailureThreshold: 3},
			Liveness:  &events.Probe{TCP: &events.TCPProbe{Port: 2}, FailureThreshold: 1}}}}
	a, _ := open()
	txn := a.begin()
	if err := txn.putResource(&resourceRecord{ID: "web", Kind: res.Kind, Resource: res, Generation: 1,
		SpecDigest: res.SpecDigest(), State: fsm.Ready}); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.commit(); err != nil {
		t.Fatal(err)
	}
	a.Close()

	a, l := open()
	x := l.res["web"]
	if x == nil || x.health == nil {
		t.Fatal("no health view for a Ready container with probes")
	}
	h := x.health
	now := time.Now()
	for range 3 {
		h.record(h.liveness, false, "connection refused", 0, now)
		now = h.nextRestart
		h.restarted(now)
	}
	h.record(h.liveness, false, "connection refused", 0, now) // the fourth restart: due in 8 s
	h.record(h.readiness, false, "refused", 0, now)
	h.record(h.readiness, false, "refused", 0, now)
	due := h.nextRestart
	if got := due.Sub(now); got != 8*time.Second {
		t.Fatalf("fourth restart due in %s, want 8s", got)
	}
	txn = a.begin()
	if err := l.keepHealth(txn, x); err != nil {
		t.Fatal(err)
	}
	if _, err := txn.commit(); err != nil {
		t.Fatal(err)
	}
	a.Close() // the agent stops

	a, l = open() // and starts again
	defer a.Close()
	h2 := l.res["web"].health
	if h2.restarts != 3 || !h2.nextRestart.Equal(due) || h2.restartWhy != h2.liveness {
		t.Fatalf("after a restart: %d restarts, next %s (why %v), want 3, %s, liveness", h2.restarts, h2.nextRestart, h2.restartWhy, due)
	}
	if h2.backoff.delay != 8*time.Second || !h2.backoff.last.Equal(h.backoff.last) {
		t.Fatalf("backoff %s since %s, want 8s since %s", h2.backoff.delay, h2.backoff.last, h.backoff.last)
	}
	if h2.readiness.fail != 2 || !h2.readiness.passing || h2.readiness.output != "refused" || h2.liveness.passing {
		t.Fatalf("readiness fail %d passing %v output %q; liveness passing %v", h2.readiness.fail, h2.readiness.passing, h2.readiness.output, h2.liveness.passing)
	}
	h2.record(h2.readiness, false, "refused", 0, now) // the third failure counts on from two
	if ok, probe, reason, _, failures := h2.verdict(); ok || probe != probeLiveness || failures != 1 {
		t.Fatalf("verdict %v %s %s %d", ok, probe, reason, failures)
	}
	if h2.readiness.passing {
		t.Fatal("readiness still passing after its third failure in a row across the restart")
	}

	// steady and healthy: no write
	h2.restarted(now)
	for range 3 {
		h2.record(h2.readiness, true, "ok", 0, now)
		h2.record(h2.liveness, true, "ok", 0, now)
	}
	txn = a.begin()
	if err := l.keepHealth(txn, l.res["web"]); err != nil {
		t.Fatal(err)
	}
	txn.commit()
	for range 5 {
		now = now.Add(10 * time.Second)
		h2.record(h2.readiness, true, "ok at "+now.String(), 0, now)
		h2.record(h2.liveness, true, "ok at "+now.String(), 0, now)
		txn = a.begin()
		if err := l.keepHealth(txn, l.res["web"]); err != nil {
			t.Fatal(err)
		}
		if txn.writes != 0 {
			t.Fatalf("a steady healthy resource wrote its health state (%d writes)", txn.writes)
		}
		txn.abort()
	}
}
