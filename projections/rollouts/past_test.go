package rollouts_test

import (
	"context"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections/rollouts"
)

// TestPastOfFoldsTheLogWithoutAnIndex: with no time-travel index (no
// connection), PastOf folds the device's events from the log: at a time
// between two generations the device is at the first, by sequence too,
// and before its first event it did not exist.
func TestPastOfFoldsTheLogWithoutAnIndex(t *testing.T) {
	env := eventstest.Start(t, true)
	ctx := context.Background()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	m := func(c string) events.Manifest {
		return events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: c}}}}
	}
	before := time.Now().Add(-time.Second)
	first, err := events.Apply(ctx, env.Store, clock, "pi-1", m("a\n"), "user:ops", nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // an event time strictly between the two
	between := time.Now()
	time.Sleep(20 * time.Millisecond)
	if _, err := events.Apply(ctx, env.Store, clock, "pi-1", m("b\n"), "user:ops", nil); err != nil {
		t.Fatal(err)
	}
	p := rollouts.PastOf{Log: env.Store}
	d, ok, err := p.DeviceAt(ctx, "pi-1", between, 0)
	if err != nil || !ok || d.Generation != 1 {
		t.Fatalf("at a time between: %v %v generation %d, want 1", ok, err, d.Generation)
	}
	if d, ok, err = p.DeviceAt(ctx, "pi-1", time.Time{}, first.Seq); err != nil || !ok || d.Generation != 1 {
		t.Fatalf("at the first sequence: %v %v generation %d, want 1", ok, err, d.Generation)
	}
	if d, ok, err = p.DeviceAt(ctx, "pi-1", time.Now().Add(time.Second), 0); err != nil || !ok || d.Generation != 2 {
		t.Fatalf("now: %v %v generation %d, want 2", ok, err, d.Generation)
	}
	if _, ok, err = p.DeviceAt(ctx, "pi-1", before, 0); err != nil || ok {
		t.Fatalf("before its first event: %v %v, want none", ok, err)
	}
}
