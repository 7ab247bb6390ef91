package reconcile_test

import (
	"context"
	"os/exec"
	"testing"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
)

// TestContainerKindHealthBatchAgreesWithOneByOne: one podman inspect for
// many containers gives each the answer KindHealth gives it alone: running,
// stopped (exit code), and absent (the batch call fails then, and each is
// read on its own).
func TestContainerKindHealthBatchAgreesWithOneByOne(t *testing.T) {
	reconciletest.UseStandins(t, standinBin)
	ctx := context.Background()
	c := reconcile.NewContainer("")
	target := func(id string) reconcile.Target {
		return reconcile.Target{Generation: 1, Resource: events.Resource{ID: id, Kind: events.KindContainer,
			Container: &events.ContainerSpec{Image: "nginx:1.27"}}}
	}
	up, down := target("up"), target("down")
	for _, tg := range []reconcile.Target{up, down} {
		if _, err := c.Apply(ctx, tg); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("podman", "stop", down.Resource.ContainerName()).CombinedOutput(); err != nil {
		t.Fatalf("podman stop: %v: %s", err, out)
	}
	for _, ts := range [][]reconcile.Target{{up, down}, {up, down, target("absent")}} {
		got := c.KindHealthBatch(ctx, ts)
		if len(got) != len(ts) {
			t.Fatalf("%d results for %d targets", len(got), len(ts))
		}
		for i, tg := range ts {
			want, werr := c.KindHealth(ctx, tg)
			if got[i].Err != nil || werr != nil {
				t.Fatalf("%s: batch error %v, alone %v", tg.Resource.ID, got[i].Err, werr)
			}
			if got[i].Health != want {
				t.Errorf("%s: batch says %+v, alone %+v", tg.Resource.ID, got[i].Health, want)
			}
		}
		if !got[0].Health.Down && got[1].Health.Reason == "ContainerExited" {
			continue
		}
		t.Errorf("up %+v, down %+v: want up running and down ContainerExited", got[0].Health, got[1].Health)
	}
}
