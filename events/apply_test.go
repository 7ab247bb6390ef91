package events_test

import (
	"context"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// A message on a device's manifest subject that is not a manifest (written
// by hand, or by a newer or broken writer) is skipped by agents and read
// models; it must not block the device's next apply for good.
func TestApplyAfterABadManifestMessageWritesTheNextGeneration(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	m, err := events.ParseManifest([]byte("resources: [{id: a, file: {path: /a}}]"))
	is.NoErr(err)
	_, err = events.Apply(ctx, env.Store, clock, "pi-01", m, "user:ann", nil)
	is.NoErr(err)
	second, err := events.Apply(ctx, env.Store, clock, "pi-01", m, "user:ann", nil)
	is.NoErr(err)
	is.Equal(second.Generation, int64(2))
	ack, err := env.JS.Publish(ctx, events.ManifestSubject("pi-01"), []byte(`{"not":"a manifest"}`))
	is.NoErr(err)

	third, err := events.Apply(ctx, env.Store, clock, "pi-01", m, "user:ann", nil)
	is.NoErr(err)
	is.Equal(third.Generation, int64(3)) // the one after the last good manifest
	is.True(third.Seq > ack.Sequence)
	last, err := env.Store.LastManifest(ctx, "pi-01")
	is.NoErr(err)
	is.Equal(last.ID, third.Event.ID)

	// the compare-and-set still holds: a writer that read before the bad
	// message loses
	_, err = events.ApplyAfter(ctx, env.Store, clock, "pi-01", m, "user:bob", nil, ack.Sequence, 2)
	is.True(errors.Is(err, events.ErrConflict))
}
