package main

import (
	"context"
	"math/rand/v2"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/rollout"
)

// TestRolloutControllerKilledAtTenMomentsEndsAsAnUninterruptedOne: 20 real
// agents, waves 1,10%,25%,50%,100%; the controller is a 'fleet rollout
// controller' process killed with SIGKILL at 10 random moments (0 to 150 ms
// after each start; fewer if the rollout ends first) and started again. The rollout ends Succeeded with
// every device on the new generation, as an uninterrupted one does: each
// wave started and passed once, each device targeted once and given the
// manifest once, and replay --verify finds the log clean.
func TestRolloutControllerKilledAtTenMomentsEndsAsAnUninterruptedOne(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleet, 20 agents")
	}
	is := is.New(t)
	bin := buildFleet(t)
	f := startRolloutFleet(t, 20, false)
	ws := "1,10%,25%,50%,100%"
	f.start("R4", "--waves", ws)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	run := func() *exec.Cmd {
		c := exec.Command(bin, "rollout", "controller", "--interval", "50ms", f.natsF)
		is.NoErr(c.Start())
		return c
	}
	kills := 0
	mid := map[int]bool{} // progress (decisions + targets) at kills that fell inside the rollout
	for ; kills < 10; kills++ {
		c := run()
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		is.NoErr(c.Process.Signal(syscall.SIGKILL))
		_ = c.Wait()
		r, err := loadRollout(f, "R4")
		is.NoErr(err)
		if rollout.Terminal(r.State) {
			break
		}
		if p := r.Decisions + len(r.Targeted); p > 1 {
			mid[p] = true
		}
	}
	t.Logf("controller killed %d times; progress at kills inside the rollout: %v", kills, mid)
	is.True(len(mid) >= 2) // the kills fell at different moments of the rollout, not all before or after it
	c := run()             // the last one runs to the end
	r := f.waitRollout("R4", func(r *rollout.Rollout) bool { return rollout.Terminal(r.State) })
	_ = c.Process.Signal(syscall.SIGKILL)
	_ = c.Wait()
	is.Equal(r.State, rollout.Succeeded)
	is.Equal(len(r.Targeted), 20)
	is.Equal(f.decisions("R4"), map[string]int{events.TypeRolloutStarted: 1, events.TypeWaveStarted: 5, events.TypeWavePassed: 5,
		events.TypeDeviceTargeted: 20, events.TypeRolloutSucceeded: 1})
	for _, id := range f.ids {
		n := 0
		for _, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{Device: id, Types: []string{events.TypeManifestApplied}}) {
			is.NoErr(err)
			n++
		}
		is.Equal(n, 2) // generation 1 and the rollout's, once
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })
	}
}

func loadRollout(f *rolloutFleet, id string) (*rollout.Rollout, error) {
	return rollouts.Load(context.Background(), f.rs.Env.Store, id)
}
