package agent

import (
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// TestLivenessRestartBackoffDoublesToItsCap drives a health view on a fake
// clock: every liveness failure past the threshold asks for a restart after
// 1, 2, 4 ... 60 s (within 10 %), capped at 60 s; after 10 minutes without
// a restart the backoff starts at 1 s again.
func TestLivenessRestartBackoffDoublesToItsCap(t *testing.T) {
	r := events.Resource{ID: "web", Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "x",
		Health: &events.HealthSpec{Liveness: &events.Probe{TCP: &events.TCPProbe{Port: 1}, FailureThreshold: 3}}}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // the fake clock
	h := newHealth(&r, "d", reconcile.NewContainer(""), now)
	fail := func() {
		for i := range 3 {
			if i > 0 {
				now = now.Add(h.liveness.timing.Period)
			}
			h.record(h.liveness, false, "connection refused", 0, now)
		}
	}
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		fail()
		if h.nextRestart.IsZero() {
			t.Fatalf("restart %d: none asked for after 3 liveness failures", i+1)
		}
		got, w := h.nextRestart.Sub(now), w*time.Second
		if got < w-w/10 || got > w+w/10 {
			t.Fatalf("restart %d after %s, want %s ±10%%", i+1, got, w)
		}
		if ok, probe, reason, _, _ := h.verdict(); ok || probe != probeLiveness || reason != ReasonLivenessFailed {
			t.Fatalf("verdict after liveness failures: %v %s %s", ok, probe, reason)
		}
		now = h.nextRestart
		h.restarted(now)
		now = now.Add(h.liveness.timing.Period)
		if ok, _, _, _, _ := h.verdict(); !ok {
			t.Fatalf("not healthy right after restart %d", i+1)
		}
	}
	if h.restarts != len(want) {
		t.Fatalf("restarts %d, want %d", h.restarts, len(want))
	}
	// healthy for 10 minutes: back to 1 s
	for range 60 {
		h.record(h.liveness, true, "ok", 0, now)
		now = now.Add(10 * time.Second)
	}
	fail()
	if got := h.nextRestart.Sub(now); got != time.Second {
		t.Fatalf("after 10 minutes healthy the restart waits %s, want 1s", got)
	}
}

// TestStartupProbeHoldsLivenessOff: until the startup probe passed, neither
// liveness nor readiness runs, and its failures alone ask for a restart.
func TestStartupProbeHoldsLivenessOff(t *testing.T) {
	r := events.Resource{ID: "web", Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "x",
		Health: &events.HealthSpec{
			Startup:   &events.Probe{TCP: &events.TCPProbe{Port: 1}, FailureThreshold: 30},
			Liveness:  &events.Probe{TCP: &events.TCPProbe{Port: 2}, FailureThreshold: 1},
			Readiness: &events.Probe{TCP: &events.TCPProbe{Port: 3}},
		}}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHealth(&r, "d", reconcile.NewContainer(""), now)
	for i := range 29 {
		for _, tr := range h.tracks(new([3]*probeTrack)) {
			if tr.role == probeLiveness || tr.role == probeReadiness {
				t.Fatalf("step %d: %s runs before startup passed", i, tr.role)
			}
		}
		h.record(h.startup, false, "refused", 0, now)
		now = now.Add(10 * time.Second)
	}
	if !h.nextRestart.IsZero() {
		t.Fatal("a restart was asked for before the startup probe's failureThreshold")
	}
	if ok, probe, reason, _, _ := h.verdict(); ok || probe != probeStartup || reason != ReasonAwaitingReadiness {
		t.Fatalf("verdict while starting: %v %s %s", ok, probe, reason)
	}
	h.record(h.startup, true, "connected", 0, now)
	var roles []string
	for _, tr := range h.tracks(new([3]*probeTrack)) {
		roles = append(roles, tr.role)
	}
	if len(roles) < 2 || roles[0] != probeReadiness || roles[1] != probeLiveness {
		t.Fatalf("after startup passed the probes that run are %v", roles)
	}
}

// TestCrashLoopFromRestartCount: the kind's restart count rising by 3
// within a minute is a crash loop, even while it says it runs.
func TestCrashLoopFromRestartCount(t *testing.T) {
	r := events.Resource{ID: "u", Kind: events.KindSystemdUnit, SystemdUnit: &events.SystemdUnitSpec{Name: "a.service", Content: "x"}}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	h := newHealth(&r, "d", reconcile.NewSystemdUnit("/", ""), now)
	for i, n := range []int{5, 5, 6, 7} {
		h.record(h.kind, true, "active", n, now)
		now = now.Add(10 * time.Second)
		if h.crashLooping {
			t.Fatalf("sample %d: crash loop after %d restarts", i, n-5)
		}
	}
	h.record(h.kind, true, "active", 8, now)
	if ok, _, reason, _, _ := h.verdict(); ok || reason != ReasonCrashLooping {
		t.Fatalf("3 restarts in 40 s: verdict %v %s", ok, reason)
	}
	// quiet for over a minute: no longer crash-looping
	for range 8 {
		now = now.Add(10 * time.Second)
		h.record(h.kind, true, "active", 8, now)
	}
	if h.crashLooping {
		t.Fatal("still crash-looping after a minute without restarts")
	}
}

// TestFailedRetryBackoffGrowsToItsCap pins the retry backoff of a resource
// failing for good: 1 s doubling per failure to the documented 5 min cap
// (each delay a random half to full of it), never more, never back to 4-8 s.
func TestFailedRetryBackoffGrowsToItsCap(t *testing.T) {
	l := &loop{a: &Agent{o: options{backoffBase: DefaultBackoffBase, backoffMax: DefaultBackoffMax}}}
	var total time.Duration
	for n := 1; n <= 40; n++ {
		d := l.backoff(n)
		want := DefaultBackoffBase << min(n-1, 20)
		want = min(want, DefaultBackoffMax)
		if d < want/2 || d > want {
			t.Fatalf("failure %d: retry after %s, want %s..%s", n, d, want/2, want)
		}
		total += d
	}
	// 40 failures take at least 40 minutes: not 762 attempts in 75 minutes
	if total < 40*time.Minute {
		t.Fatalf("40 failures retried within %s", total)
	}
}
