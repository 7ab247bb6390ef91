package agent_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// TestUnhealthyForAnotherReasonIsAnEvent: an Unhealthy container whose
// readiness fails another way (HTTP 500, then HTTP 503) and then whose
// liveness fails too records each change as an Unhealthy -> Unhealthy
// StatusChanged; the same failure probed again and again records nothing.
func TestUnhealthyForAnotherReasonIsAnEvent(t *testing.T) {
	var ready, live atomic.Int32
	var readyRuns atomic.Int64
	ready.Store(200)
	live.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := int(live.Load())
		if r.URL.Path == "/ready" {
			readyRuns.Add(1)
			code = int(ready.Load())
		}
		w.WriteHeader(code)
		w.Write([]byte("at " + time.Now().Format(time.RFC3339Nano))) // varies every run
	}))
	defer srv.Close()
	r, _ := healthRig(t, "pi-hr")
	h := &events.HealthSpec{
		Readiness:      &events.Probe{HTTP: &events.HTTPProbe{URL: srv.URL + "/ready"}, Period: "1s", FailureThreshold: 1},
		Liveness:       &events.Probe{HTTP: &events.HTTPProbe{URL: srv.URL + "/live"}, Period: "1s", FailureThreshold: 2},
		RestartBackoff: &events.RestartBackoff{Initial: "1m"}, // no restart while the test looks
	}
	gen := apply(t, r.env, "pi-hr", containerWith("web", h))
	waitFor(t, 10*time.Second, "web Ready", func() bool { return allReady(r.h.Agent, 1, gen) })

	unhealthy := func() []*events.StatusChanged {
		var out []*events.StatusChanged
		for _, sc := range statusEvents(r, "web") {
			if sc.From == string(fsm.Unhealthy) && sc.To == string(fsm.Unhealthy) {
				out = append(out, sc)
			}
		}
		return out
	}
	ready.Store(500)
	waitFor(t, 5*time.Second, "web not Ready (HTTP 500)", func() bool {
		st := status(r.h.Agent, "web")
		return st.State == fsm.Unhealthy && st.Reason == agent.ReasonReadinessFailed && strings.HasPrefix(st.Error, "HTTP 500")
	})
	ready.Store(503)
	waitFor(t, 5*time.Second, "an event for HTTP 503", func() bool {
		u := unhealthy()
		return len(u) == 1 && strings.HasPrefix(u[0].Error, "HTTP 503") && u[0].Reason == agent.ReasonReadinessFailed
	})
	// The same failure, probed three more times (each output differs by
	// its time): no event.
	runs := readyRuns.Load()
	waitFor(t, 10*time.Second, "three more readiness runs", func() bool { return readyRuns.Load() >= runs+3 })
	if u := unhealthy(); len(u) != 1 {
		t.Fatalf("the same readiness failure again recorded %d Unhealthy -> Unhealthy events, want 1 in all", len(u))
	}

	live.Store(500)
	waitFor(t, 10*time.Second, "an event for the liveness failure", func() bool {
		u := unhealthy()
		return len(u) == 2 && u[1].Reason == agent.ReasonLivenessFailed && u[1].Probe == "liveness"
	})
	checkLog(t, deviceLog(t, r.env, "pi-hr"))
}
