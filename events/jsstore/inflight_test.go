package jsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestEmbeddedServerKeepsABatchOpenForEachOfManyDevices: the embedded
// server takes more open atomic batches at once than the 1,000 it used to
// (a rollout to 10,000 devices had each agent's drain open one; 9,395 were
// refused with 429 "too many inflight"): 1,500 batches opened and not yet
// committed are all taken, and committing them stores every event once.
func TestEmbeddedServerKeepsABatchOpenForEachOfManyDevices(t *testing.T) {
	is := is.New(t)
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir(), RelaxedSync: true})
	is.NoErr(err)
	t.Cleanup(srv.Stop)
	nc, err := srv.Connect()
	is.NoErr(err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	is.NoErr(err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = jsstore.Open(ctx, js, jsstore.Config{})
	is.NoErr(err)
	c := newClock(t)
	const open = 1500
	type pending struct {
		b    jetstreamext.BatchPublisher
		last *nats.Msg
	}
	msg := func(dev, res string) *nats.Msg {
		enc, err := jsstore.EncodedOf(statusEvent(t, c, dev, res, "Pending", "Reconciling"))
		is.NoErr(err)
		m := nats.NewMsg(enc.Subject)
		m.Data = enc.Data
		m.Header.Set(jetstream.MsgIDHeader, enc.ID)
		return m
	}
	ps := make([]pending, 0, open)
	for i := 0; i < open; i++ {
		dev := fmt.Sprintf("pi-%04d", i)
		b, err := jetstreamext.NewBatchPublisher(js)
		is.NoErr(err)
		if err := b.AddMsg(msg(dev, "r0")); err != nil { // the server acks the first message: the batch is open
			t.Fatalf("batch %d of %d open at once: %v", i+1, open, err)
		}
		ps = append(ps, pending{b: b, last: msg(dev, "r1")})
	}
	for i, p := range ps {
		if _, err := p.b.CommitMsg(ctx, p.last); err != nil {
			t.Fatalf("commit batch %d: %v", i, err)
		}
	}
	str, err := js.Stream(ctx, events.Stream)
	is.NoErr(err)
	info, err := str.Info(ctx)
	is.NoErr(err)
	is.Equal(info.State.Msgs, uint64(2*open))
}
