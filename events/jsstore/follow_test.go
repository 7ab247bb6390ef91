package jsstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// TestFollowYieldsFromASequenceThenLiveEvents: Follow starts at FromSeq,
// yields what is stored in stream order with each event's sequence and
// stream time, then the events appended while it follows, a bad message as
// a *BadMessage without stopping, and ends without an error when its ctx
// is done.
func TestFollowYieldsFromASequenceThenLiveEvents(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(8, fixtures.Options{Devices: 4, Events: 1500, UnknownKind: true})
	first, later := evs[:1000], evs[1000:]
	is.NoErr(env.Store.AppendBatch(ctx, first))

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type got struct {
		s   events.Stored
		err error
	}
	out := make(chan got, 4096)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for s, err := range env.Store.Follow(fctx, events.Filter{FromSeq: 301}) {
			out <- got{s, err}
		}
	}()
	next := func() got {
		t.Helper()
		select {
		case g := <-out:
			return g
		case <-time.After(10 * time.Second):
			t.Fatal("follow yielded nothing for 10 s")
		}
		return got{}
	}
	for i := 300; i < len(first); i++ { // what was stored, from sequence 301
		g := next()
		is.NoErr(g.err)
		is.Equal(g.s.Seq, uint64(i+1))
		is.Equal(g.s.ID, first[i].ID)
		is.True(!g.s.StreamTime.IsZero())
	}
	_, err := env.JS.Publish(ctx, "fleet.pi-01.status.motd", []byte(`{"id":"trunc`))
	is.NoErr(err)
	g := next()
	var bad *events.BadMessage
	is.True(errors.As(g.err, &bad)) // a bad message is yielded as one
	is.Equal(bad.Seq, uint64(len(first)+1))
	is.NoErr(env.Store.AppendBatch(ctx, later)) // live, appended while following
	for i, e := range later {
		g := next()
		is.NoErr(g.err)
		is.Equal(g.s.ID, e.ID)
		is.Equal(g.s.Seq, uint64(len(first)+2+i))
	}
	cancel()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after its ctx was cancelled")
	}
	close(out)
	for g := range out {
		is.NoErr(g.err) // the end is not an error
	}
}

// TestFollowFiltersByDevice: a device's follow sees only its events, live too.
func TestFollowFiltersByDevice(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 3, Events: 600})
	is.NoErr(env.Store.AppendBatch(ctx, evs[:300]))
	dev := evs[0].Device
	var want []string
	for _, e := range evs {
		if e.Device == dev {
			want = append(want, e.ID)
		}
	}
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	go func() { _ = env.Store.AppendBatch(ctx, evs[300:]) }()
	var ids []string
	for s, err := range env.Store.Follow(fctx, events.Filter{Device: dev}) {
		is.NoErr(err)
		is.Equal(s.Device, dev)
		ids = append(ids, s.ID)
		if len(ids) == len(want) {
			break
		}
	}
	is.Equal(ids, want)
}
