package rollouts_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections/rollouts"
)

// TestReaderKeptAnswersAsAFreshLoad: one Reader asked again and again (as
// the server's API asks it on every device page and every refresh of the
// rollout page) reads only what was appended since its last answer, and
// still answers what a load of the whole log answers: a second rollout,
// a pause of the first and a forged decision appended between questions
// are seen (the forged one not folded), in the order rollouts started.
func TestReaderKeptAnswersAsAFreshLoad(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	kept := &rollouts.Reader{Log: env.Store}
	fresh := func() *rollouts.Reader { return &rollouts.Reader{Log: env.Store} }

	startRollout(t, env.Store, "RA", []string{"pi-0001", "pi-0002"}, []string{"50%", "100%"}, 0)
	held, err := kept.HeldBy(ctx, "pi-0001")
	is.NoErr(err)
	is.Equal(len(held), 1)
	is.Equal(held[0].Rollout, "RA")
	is.Equal(held[0].State, "Running")

	startRollout(t, env.Store, "RB", []string{"pi-0001"}, []string{"100%"}, 0)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	ra, err := rollouts.Load(ctx, env.Store, "RA")
	is.NoErr(err)
	_, err = rollouts.Decide(ctx, env.Store, clock, ra, "user:ops", &events.RolloutPaused{Reason: "operator: lunch"})
	is.NoErr(err)
	// a decision claiming a device's actor: forged, never folded
	forged, err := events.New("", "RA", 0, "agent:pi-0001", &events.RolloutResumed{Reason: "forged"})
	is.NoErr(err)
	clock.Stamp(&forged)
	_, _, err = env.Store.Append(ctx, forged)
	is.NoErr(err)

	for _, dev := range []string{"pi-0001", "pi-0002"} {
		got, err := kept.HeldBy(ctx, dev)
		is.NoErr(err)
		want, err := fresh().HeldBy(ctx, dev)
		is.NoErr(err)
		is.Equal(got, want) // kept and fresh agree
	}
	got, err := kept.HeldBy(ctx, "pi-0001")
	is.NoErr(err)
	is.Equal(len(got), 2)
	is.Equal(got[0].Rollout, "RA")
	is.Equal(got[0].State, "Paused") // the pause appended after the first answer
	is.Equal(got[1].Rollout, "RB")

	list, err := kept.List(ctx)
	is.NoErr(err)
	freshList, err := fresh().List(ctx)
	is.NoErr(err)
	is.Equal(len(list), 2)
	is.Equal(list[0].ID, "RA")
	is.Equal(list[1].ID, "RB")
	is.Equal(list[0].State, freshList[0].State)
	one, err := kept.Get(ctx, "RA", time.Time{}, 0)
	is.NoErr(err)
	is.Equal(one.State, "Paused")
	_, err = kept.Get(ctx, "RZ", time.Time{}, 0)
	is.True(errors.Is(err, events.ErrNotFound))
}
