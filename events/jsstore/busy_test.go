package jsstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestManyWritersBeyondTheServersBatchLimitAllSucceed: 300 writers (more
// than the 50 atomic batches a server with nats-server's default limits
// keeps open on a stream, as with --nats) append a
// batch each at once, as a fleet's agents do in a rollout; the server
// refuses some as "too many inflight" (429), and the store sends those again
// after a short pause instead of failing them: every append succeeds and
// every event is stored once.
func TestManyWritersBeyondTheServersBatchLimitAllSucceed(t *testing.T) {
	is := is.New(t)
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir(), RelaxedSync: true,
		Configure: func(o *server.Options) { o.JetStreamLimits = server.JSLimitOpts{} }}) // nats-server's defaults
	is.NoErr(err)
	t.Cleanup(srv.Stop)
	nc, err := srv.Connect()
	is.NoErr(err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	is.NoErr(err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := jsstore.Open(ctx, js, jsstore.Config{})
	is.NoErr(err)
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
			errs[w] = st.AppendEncoded(ctx, batches[w])
		}()
	}
	close(start)
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", w, err)
		}
	}
	str, err := js.Stream(ctx, events.Stream)
	is.NoErr(err)
	info, err := str.Info(ctx)
	is.NoErr(err)
	is.Equal(info.State.Msgs, uint64(writers*per)) // each once
}
