package main

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestSequenceZeroIsRefused: stream sequences start at 1; a flag given 0 is
// refused with exit code 2 rather than read as "no bound" or "now".
func TestSequenceZeroIsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"inspect", "pi-01", "--seq", "0"},
		{"replay", "--to-seq", "0"},
		{"replay", "--from-seq", "0"},
		{"export", "--to-seq", "0"},
	} {
		t.Run(args[0]+" "+args[len(args)-2], func(t *testing.T) {
			is := is.New(t)
			_, code := replayCLI(t, append(args, "--nats=nats://127.0.0.1:1")...)
			is.Equal(code, 2)
		})
	}
}

// TestApplyRefusesABadFleetActor: FLEET_ACTOR names the person in the log;
// one that does not follow the actor rule is refused (exit 2) and nothing is
// written; a good one is the event's actor.
func TestApplyRefusesABadFleetActor(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	manifest := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	url := "--nats=" + env.Server.URL()

	t.Setenv("FLEET_ACTOR", "ops team\nsecond line")
	_, code := replayCLI(t, "apply", "-f", manifest, "--device", "pi-01", url)
	is.Equal(code, 2)
	_, err := env.Store.LastManifest(context.Background(), "pi-01")
	is.True(errors.Is(err, events.ErrNotFound)) // nothing written

	t.Setenv("FLEET_ACTOR", "ops@site-1")
	_, code = replayCLI(t, "apply", "-f", manifest, "--device", "pi-01", url)
	is.Equal(code, 0)
	last, err := env.Store.LastManifest(context.Background(), "pi-01")
	is.NoErr(err)
	is.Equal(last.Actor, "user:ops@site-1")
}
