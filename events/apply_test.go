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

// ApplyOnce writes nothing when the last generation already holds exactly
// this manifest from this actor with the same signature; anything else (an
// other actor, other content, signed where it was unsigned, another key) is
// a new generation.
func TestApplyOnceFindsTheSameManifestAlreadyApplied(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	m, err := events.ParseManifest([]byte("resources: [{id: a, file: {path: /a}}]"))
	is.NoErr(err)
	other, err := events.ParseManifest([]byte("resources: [{id: b, file: {path: /b}}]"))
	is.NoErr(err)
	key, err := events.GenerateSigner()
	is.NoErr(err)
	key2, err := events.GenerateSigner()
	is.NoErr(err)

	first, err := events.ApplyOnce(ctx, env.Store, clock, "pi-01", m, "user:ann", nil)
	is.NoErr(err)
	is.True(!first.Already)
	again, err := events.ApplyOnce(ctx, env.Store, clock, "pi-01", m, "user:ann", nil)
	is.NoErr(err)
	is.True(again.Already)
	is.Equal(again.Generation, int64(1))
	is.Equal(again.Seq, first.Seq)
	is.Equal(again.Event.ID, first.Event.ID)

	steps := []struct {
		m      events.Manifest
		actor  string
		signer events.Signer
		gen    int64
		always bool
	}{
		{m, "user:bob", nil, 2, false},     // another actor
		{other, "user:bob", nil, 3, false}, // other content
		{other, "user:bob", key, 4, false}, // now signed
		{other, "user:bob", key, 4, true},  // the same signed manifest again
		{other, "user:bob", key2, 5, false},
	}
	for i, s := range steps {
		res, err := events.ApplyOnce(ctx, env.Store, clock, "pi-01", s.m, s.actor, s.signer)
		is.NoErr(err)
		is.Equal(res.Generation, s.gen)
		if res.Already != s.always {
			t.Fatalf("step %d: already %v, want %v", i, res.Already, s.always)
		}
	}
}
