package jsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestApplyManyBatchesManifestsWithACompareAndSetEach: 1,500 devices (two
// batches) each get generation 1, then 2, each manifest once at the
// sequence it reports; a device another writer moved between the read and
// the send is applied again on its own (its generation goes on from the
// other writer's, nothing is lost or written twice); a device twice in one
// call is refused, naming it, with nothing written.
func TestApplyManyBatchesManifestsWithACompareAndSetEach(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	items := make([]events.ApplyItem, 1500)
	for i := range items {
		items[i] = events.ApplyItem{Device: fmt.Sprintf("d-%04d", i), Manifest: manifest("v1\n")}
	}
	res, err := events.ApplyMany(ctx, env.Store, c, items, "user:ops", nil)
	is.NoErr(err)
	is.Equal(len(res), len(items))
	for i, a := range res {
		is.Equal(a.Generation, int64(1))
		last, err := env.Store.LastManifest(ctx, items[i].Device)
		is.NoErr(err)
		is.Equal(last.Seq, a.Seq) // the sequence it reports is where it is
		is.Equal(last.ID, a.Event.ID)
	}

	// Another writer moves d-0003 after ApplyMany has read the manifests
	// and before its batch is sent.
	for i := range items {
		items[i].Manifest = manifest("v2\n")
	}
	racing := &racingStore{Store: env.Store, race: func() {
		_, err := events.Apply(ctx, env.Store, c, "d-0003", manifest("other\n"), "user:other", nil)
		is.NoErr(err)
	}}
	res, err = events.ApplyMany(ctx, racing, c, items, "user:ops", nil)
	is.NoErr(err)
	is.Equal(racing.conflicts, 1) // d-0003 met the other writer
	is.Equal(len(res), len(items))
	is.Equal(res[0].Generation, int64(2))
	is.Equal(res[3].Generation, int64(3)) // after the other writer's 2
	n := 0
	for _, err := range env.Store.Read(ctx, events.Filter{Types: []string{events.TypeManifestApplied}}) {
		is.NoErr(err)
		n++
	}
	is.Equal(n, 2*len(items)+1) // each once

	before, err := env.Store.LastSeq(ctx)
	is.NoErr(err)
	_, err = events.ApplyMany(ctx, env.Store, c, []events.ApplyItem{items[0], items[0]}, "user:ops", nil)
	is.True(err != nil && strings.Contains(err.Error(), `device "d-0000": twice`))
	after, err := env.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(after, before) // nothing written
}

// racingStore runs race once, after the first LastManifests, and counts
// the conflicts AppendManifests meets.
type racingStore struct {
	*jsstore.Store
	race      func()
	raced     bool
	conflicts int
}

func (r *racingStore) LastManifests(ctx context.Context, devs []string) (map[string]events.Stored, map[string]*events.BadMessage, error) {
	m, bad, err := r.Store.LastManifests(ctx, devs)
	if !r.raced {
		r.raced = true
		r.race()
	}
	return m, bad, err
}

func (r *racingStore) AppendManifests(ctx context.Context, ms []events.ManifestAppend) []events.ManifestResult {
	res := r.Store.AppendManifests(ctx, ms)
	for _, x := range res {
		if errors.Is(x.Err, events.ErrConflict) {
			r.conflicts++
		}
	}
	return res
}

// TestAppendManifestsChecksEachDevice: in one call, the manifest whose
// expected sequence is stale is refused as a conflict and the others are
// stored, each at the sequence it reports.
func TestAppendManifestsChecksEachDevice(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	_, err := events.Apply(ctx, env.Store, c, "b", manifest("v1\n"), "user:ops", nil)
	is.NoErr(err)
	var ms []events.ManifestAppend
	for _, d := range []string{"a", "b", "c"} {
		e, err := events.New(d, "", 1, "user:ops", &events.ManifestApplied{Manifest: manifest("v\n"), Digest: manifest("v\n").Digest()})
		is.NoErr(err)
		c.Stamp(&e)
		ms = append(ms, events.ManifestAppend{Event: e}) // b expects none: stale
	}
	res := env.Store.AppendManifests(ctx, ms)
	is.True(errors.Is(res[1].Err, events.ErrConflict))
	for _, i := range []int{0, 2} {
		is.NoErr(res[i].Err)
		last, err := env.Store.LastManifest(ctx, ms[i].Event.Device)
		is.NoErr(err)
		is.Equal(last.Seq, res[i].Seq)
		is.Equal(last.ID, ms[i].Event.ID)
	}
	last, err := env.Store.LastManifest(ctx, "b")
	is.NoErr(err)
	is.True(last.ID != ms[1].Event.ID) // b's stale one was not stored
}
