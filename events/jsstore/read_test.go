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

// TestReadYieldsEveryEventInStreamOrderAcrossDecoders: a log of many chunks
// (decoded side by side) comes back whole, in stream order, each event the
// one written; a range ending mid-chunk ends there.
func TestReadYieldsEveryEventInStreamOrderAcrossDecoders(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(5, fixtures.Options{Devices: 7, Events: 3000, UnknownKind: true})
	is.NoErr(env.Store.AppendBatch(ctx, evs))
	i := 0
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		is.Equal(s.Seq, uint64(i+1))
		is.Equal(s.ID, evs[i].ID)
		i++
	}
	is.Equal(i, len(evs))
	n := 0
	for s, err := range env.Store.Read(ctx, events.Filter{FromSeq: 700, ToSeq: 1300}) {
		is.NoErr(err)
		is.Equal(s.Seq, uint64(700+n))
		n++
	}
	is.Equal(n, 601)
}

// TestReadStopsWhenTheCallerStopsOrCtxEnds: breaking out of the loop
// returns at once, and a cancelled ctx ends the read with an error.
func TestReadStopsWhenTheCallerStopsOrCtxEnds(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(6, fixtures.Options{Devices: 5, Events: 2000})
	is.NoErr(env.Store.AppendBatch(ctx, evs))
	n := 0
	for _, err := range env.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		n++
		if n == 300 {
			break
		}
	}
	is.Equal(n, 300)

	cctx, cancel := context.WithCancel(ctx)
	n = 0
	var last error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, err := range env.Store.Read(cctx, events.Filter{}) {
			if err != nil {
				last = err
				continue
			}
			n++
			if n == 10 {
				cancel()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end after its ctx was cancelled")
	}
	if n < len(evs) { // cancelled before the end: the read says so
		is.True(last != nil)
		is.True(errors.Is(last, context.Canceled))
	}
}
