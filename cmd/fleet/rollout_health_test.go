package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/rollout"
)

var (
	rolloutStandinsOnce sync.Once
	rolloutStandinsDir  string
	rolloutStandinsErr  error
)

// withStandinPodman gives each agent the stand-in podman (fixtures/standins)
// with a state folder of its own: a wrapper script per device sets
// FLEET_STANDIN_STATE, so two devices' containers of one name never meet.
func withStandinPodman(t *testing.T) func(id, dir string) []agent.Option {
	t.Helper()
	rolloutStandinsOnce.Do(func() {
		rolloutStandinsDir, rolloutStandinsErr = os.MkdirTemp("", "fleet-rollout-standins-")
		if rolloutStandinsErr == nil {
			rolloutStandinsErr = reconciletest.BuildStandins(rolloutStandinsDir)
		}
	})
	if rolloutStandinsErr != nil {
		t.Fatal(rolloutStandinsErr)
	}
	return func(id, dir string) []agent.Option {
		state := filepath.Join(dir, "standin")
		wrapper := filepath.Join(dir, "podman")
		script := fmt.Sprintf("#!/bin/sh\nFLEET_STANDIN_STATE=%q exec %q \"$@\"\n", state, filepath.Join(rolloutStandinsDir, "podman"))
		if err := os.MkdirAll(state, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(dir, "root")
		return []agent.Option{agent.WithReconcilers(reconcile.Defaults(reconcile.Options{Root: root,
			StateDir: filepath.Join(dir, "state"), Podman: wrapper})...)}
	}
}

// startManifest starts rollout id of the manifest text with the CLI.
func (f *rolloutFleet) startManifest(id, manifest string, extra ...string) {
	f.t.Helper()
	m := filepath.Join(f.dir, id+".yaml")
	if err := os.WriteFile(m, []byte(manifest), 0o644); err != nil {
		f.t.Fatal(err)
	}
	args := append([]string{"rollout", "start", "--id", id, "-f", m, "--selector", "site=lab"}, extra...)
	if out, code := replayCLI(f.t, append(args, f.natsF)...); code != 0 {
		f.t.Fatalf("rollout start: exit %d: %s", code, out)
	}
}

// TestRolloutGateCountsUnhealthyDuringTheSoakAsFailed: 6 real agents with
// the stand-in podman, a rollout of a container whose readiness probe GETs
// a real local HTTP server, waves 50%,100% (3, 3), a budget of 2, a soak
// of an hour. The first wave's containers pass readiness and are Ready
// (gen 2), then the server answers 500: their resources are Ready but
// unhealthy during the soak (Unhealthy, ReadinessFailed, Degraded), which
// the gate counts as failed: 3 > 2 spends the budget, the rollout pauses
// naming the probe, and the second wave is never targeted. Before the
// probe fails, the wave is held by its soak, not passed. Replaying the log
// re-derives the WaveFailed; tampered, it is a gate violation.
func TestRolloutGateCountsUnhealthyDuringTheSoakAsFailed(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(code.Load()))
		fmt.Fprintf(w, "db: %s", http.StatusText(int(code.Load())))
	}))
	defer srv.Close()
	f := startRolloutFleet(t, 6, false, withStandinPodman(t))
	plan := rollout.Plan("RH", f.ids, []string{"50%", "100%"})
	is.Equal([]int{len(plan[0]), len(plan[1])}, []int{3, 3})
	manifest := fmt.Sprintf(`resources:
  - id: web
    container:
      image: nginx:1.27
      health:
        readiness: {http: {url: %q}, period: 1s, failureThreshold: 1}
`, srv.URL+"/healthz")
	f.startManifest("RH", manifest, "--waves", "50%,100%", "--max-failures", "2", "--soak", "1h", "--wave-deadline", "10m")
	stop := f.controller()
	defer stop()
	for _, id := range plan[0] {
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })
	}
	r := f.waitRollout("RH", func(r *rollout.Rollout) bool { return len(r.Targeted) == 3 })
	is.Equal(r.State, rollout.Running) // held by the soak
	is.True(!r.Passed[0])

	code.Store(500)
	r = f.waitRollout("RH", func(r *rollout.Rollout) bool { return r.State == rollout.Paused })
	is.Equal(len(r.Failed), 3)
	is.True(strings.Contains(r.Reason, "failure budget spent"))
	for _, id := range plan[0] {
		d, err := f.cl.Device(t.Context(), id)
		is.NoErr(err)
		c, _ := d.Condition(projections.CondDegraded)
		is.Equal(c.Status, projections.True) // the device's own read model says unhealthy
	}
	f.untouchedOutside(plan[0]) // the second wave never got the new generation
	is.Equal(f.decisions("RH"), map[string]int{events.TypeRolloutStarted: 1, events.TypeWaveStarted: 1, events.TypeDeviceTargeted: 3,
		events.TypeWaveFailed: 1, events.TypeRolloutPaused: 1})
	// replay re-derives the WaveFailed from the health transitions before it;
	// a tampered one (a device of the second wave named, or two failures
	// that do not spend a budget of 2) is a gate violation
	out, exit := f.exportTampered("RH", events.TypeWaveFailed, func(_ *events.Event, p events.Payload) {
		p.(*events.WaveFailed).Failed[0] = plan[1][0]
	})
	is.Equal(exit, 1)
	is.True(strings.Contains(out, "names "+plan[1][0]+" failed, but it was not targeted in wave 0"))
	out, exit = f.exportTampered("RH", events.TypeWaveFailed, func(_ *events.Event, p events.Payload) {
		w := p.(*events.WaveFailed)
		w.Failed = w.Failed[:2]
	})
	is.Equal(exit, 1)
	is.True(strings.Contains(out, "2 failed devices do not spend the budget (at most 2)"))
}
