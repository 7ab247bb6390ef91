package jsstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
)

// consumers is the FLEET stream's consumer count, as the server has it.
func consumers(t *testing.T, env *eventstest.Env) int {
	t.Helper()
	st, err := env.JS.Stream(context.Background(), events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// TestReadsBrokenOffLeaveNoConsumer: 500 reads (Read, Follow and Batches)
// stopped early, by the caller breaking out or by ctx ending, and reads
// that run to their end, leave the stream's consumer count where it was:
// each read removes its consumer when its iteration ends, whichever way
// (they used to stay for the ordered consumer's 5 minutes of inactivity,
// and a reader polling the log ran into the stream's consumer limit).
func TestReadsBrokenOffLeaveNoConsumer(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	is.NoErr(env.Store.AppendBatch(ctx, fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Events: 600})))
	before := consumers(t, env)
	for i := range 500 {
		switch i % 5 {
		case 0: // break out of a read
			for _, err := range env.Store.Read(ctx, events.Filter{}) {
				is.NoErr(err)
				break
			}
		case 1: // break out of a follow
			for _, err := range env.Store.Follow(ctx, events.Filter{FromSeq: 10}) {
				is.NoErr(err)
				break
			}
		case 2: // break out of a batched read and a batched follow
			for _, err := range env.Store.Batches(ctx, events.Filter{}, events.BatchOptions{Max: 10}) {
				is.NoErr(err)
				break
			}
			for _, err := range env.Store.Batches(ctx, events.Filter{}, events.BatchOptions{Follow: true}) {
				is.NoErr(err)
				break
			}
		case 3: // a follow whose ctx ends while it waits for live events
			fctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
			for range env.Store.Follow(fctx, events.Filter{FromSeq: 601}) {
			}
			cancel()
		case 4: // reads that run to their end
			for _, err := range env.Store.Read(ctx, events.Filter{FromSeq: 590}) {
				is.NoErr(err)
			}
			for _, err := range env.Store.Batches(ctx, events.Filter{FromSeq: 500}, events.BatchOptions{}) {
				is.NoErr(err)
			}
		}
	}
	is.Equal(consumers(t, env), before)
}

// TestReadsGoOnUnderASmallConsumerLimit: on a stream that allows 3
// consumers, 200 reads one after another (each broken off) are all served.
func TestReadsGoOnUnderASmallConsumerLimit(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	is.NoErr(env.JS.DeleteStream(ctx, events.Stream))
	cfg := jsstore.StreamConfig(jsstore.Config{})
	cfg.MaxConsumers = 3
	// The server removes a deleted stream's directory after it answered the
	// delete; a create in that window can fail with "could not create storage
	// directory" (seen once under the race detector), so it is tried again.
	var err error
	eventstest.WaitFor(t, 10*time.Second, "the stream created again after its delete", func() bool {
		_, err = env.JS.CreateStream(ctx, cfg)
		return err == nil
	})
	st, err := jsstore.Attach(ctx, env.JS)
	is.NoErr(err)
	is.NoErr(st.AppendBatch(ctx, fixtures.GenerateLog(4, fixtures.Options{Devices: 2, Events: 300})))
	for i := range 200 {
		n := 0
		for _, err := range st.Read(ctx, events.Filter{}) {
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if n++; n == 5 {
				break
			}
		}
		is.Equal(n, 5)
	}
}
