package jsstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestManyWritersBeyondTheServersBatchLimitAllSucceed: 300 writers (more
// than the 50 atomic batches the server keeps open on a stream) append a
// batch each at once, as a fleet's agents do in a rollout; the server
// refuses some as "too many inflight" (429), and the store sends those again
// after a short pause instead of failing them: every append succeeds and
// every event is stored once.
func TestManyWritersBeyondTheServersBatchLimitAllSucceed(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newClock(t)
	const writers, per = 300, 20
	batches := make([][]jsstore.Encoded, writers)
	for w := range batches {
		dev := fmt.Sprintf("pi-%03d", w)
		for i := 0; i < per; i++ {
			enc, err := jsstore.EncodedOf(statusEvent(t, c, dev, fmt.Sprintf("r%d", i), "Pending", "Reconciling"))
			is.NoErr(err)
			batches[w] = append(batches[w], enc)
		}
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[w] = env.Store.AppendEncoded(ctx, batches[w])
		}()
	}
	close(start)
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	str, err := env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	info, err := str.Info(ctx)
	is.NoErr(err)
	is.Equal(info.State.Msgs, uint64(writers*per)) // each once
}
