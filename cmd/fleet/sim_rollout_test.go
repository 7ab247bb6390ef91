package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/cmd/fleet/internal/sim"
	"github.com/fleet-dev/fleet/rollout"
)

// TestRolloutSimulatedFleetPausesOnTheFirstWave: the simulator's real
// agents (1,000 with FLEET_SOAK=1, else 60) against a `fleet server` child
// process whose own rollout controller drives a rollout in waves 5%, 25%,
// 100% with a budget of 2; 3 devices of the first wave fail (a real
// failure of the file reconciler). The rollout pauses on the spent budget
// within 10 s of the third failure, no device outside the first wave is
// targeted or gets a manifest, and the log, gate decisions included,
// verifies. The figure is in BENCHMARKS.md (Rollouts).
func TestRolloutSimulatedFleetPausesOnTheFirstWave(t *testing.T) {
	if testing.Short() {
		t.Skip("simulated fleet: not in -short")
	}
	is := is.New(t)
	n := 60
	if os.Getenv("FLEET_SOAK") == "1" {
		n = 1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var log strings.Builder
	rep, err := sim.RunRolloutGate(ctx, sim.Config{Devices: n, Resources: 1, For: 3 * time.Minute,
		Dir: t.TempDir(), Server: simServer, Log: &log}, 3)
	t.Log(log.String())
	is.NoErr(err)
	t.Logf("%d devices, waves %v: %s %s after the third failure (%s after the start), %d targeted, %d outside the first wave, %d events, %d gate decisions verified; raw JetStream: %d CAS publishes in %s",
		rep.Devices, rep.WaveSizes, rep.State, rep.PauseAfter, rep.StartToStop, rep.Targeted, rep.OutsideFirstWave, rep.Events, rep.GateChecked, rep.WaveSizes[0], rep.RawCAS)
	is.Equal(rep.State, rollout.Paused)
	is.True(strings.Contains(rep.Reason, "failure budget spent"))
	is.Equal(rep.OutsideFirstWave, 0)
	is.Equal(rep.Targeted, rep.WaveSizes[0])
	is.True(rep.PauseAfter > 0 && rep.PauseAfter < 10*time.Second) // the promise
	is.True(rep.VerifyOK)
	is.True(rep.GateChecked >= 1)
}
