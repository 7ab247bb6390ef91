package jsstore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestAppendEncodedStoresBytesInOrderAndOnce: 1,500 pre-encoded events (two
// atomic batches) come back in order with their exact bytes; appending the
// first 700 again (a retry after a lost ack) stores nothing twice.
func TestAppendEncodedStoresBytesInOrderAndOnce(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	encs := make([]jsstore.Encoded, 1500)
	for i := range encs {
		e := statusEvent(t, c, "pi-01", fmt.Sprintf("r%d", i%7), "Pending", "Reconciling")
		enc, err := jsstore.EncodedOf(e)
		is.NoErr(err)
		encs[i] = enc
	}
	is.NoErr(env.Store.AppendEncoded(ctx, encs))
	is.NoErr(env.Store.AppendEncoded(ctx, encs[:700])) // a retry: stored once
	i := 0
	for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
		is.NoErr(err)
		is.Equal(s.ID, encs[i].ID) // in order
		is.Equal(s.Subject, encs[i].Subject)
		i++
	}
	is.Equal(i, len(encs)) // each once
}

func TestEncodedOfRefusesInvalidEvents(t *testing.T) {
	is := is.New(t)
	e := statusEvent(t, newClock(t), "pi-01", "motd", "Pending", "Reconciling")
	e.Resource = "bad.id"
	_, err := jsstore.EncodedOf(e)
	is.True(err != nil) // the resource id rule is checked
}
