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

// TestBatchesReadsARangeAsReadDoes: a batched read of a range yields, batch
// by batch, the same events as Read of that range, in order, a bad message
// in its place as a delivery with a *BadMessage, batches of at most Max,
// and ends at ToSeq.
func TestBatchesReadsARangeAsReadDoes(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 4, Events: 3000, UnknownKind: true})
	is.NoErr(env.Store.AppendBatch(ctx, evs[:1000]))
	_, err := env.JS.Publish(ctx, "fleet.pi-01.status.motd", []byte(`{"id":"trunc`)) // sequence 1001
	is.NoErr(err)
	is.NoErr(env.Store.AppendBatch(ctx, evs[1000:]))

	var want []uint64
	for s, err := range env.Store.Read(ctx, events.Filter{FromSeq: 11, ToSeq: 2500}) {
		var bad *events.BadMessage
		if errors.As(err, &bad) {
			want = append(want, bad.Seq)
			continue
		}
		is.NoErr(err)
		want = append(want, s.Seq)
	}
	var got []uint64
	bads := 0
	for b, err := range env.Store.Batches(ctx, events.Filter{FromSeq: 11, ToSeq: 2500}, events.BatchOptions{Max: 700}) {
		is.NoErr(err)
		is.True(b.Len() > 0)
		is.True(b.Len() <= 700+256) // Max, and at most the run that reached it
		for _, run := range b.Runs {
			for _, d := range run {
				if d.Err != nil {
					var bad *events.BadMessage
					is.True(errors.As(d.Err, &bad))
					is.Equal(bad.Seq, d.Seq)
					bads++
				} else {
					is.Equal(d.Stored.Seq, d.Seq)
					is.True(!d.Stored.StreamTime.IsZero())
				}
				got = append(got, d.Seq)
			}
		}
		is.Equal(b.Last(), got[len(got)-1])
	}
	is.Equal(bads, 1)
	is.Equal(got, want)
	is.Equal(got[len(got)-1], uint64(2500))

	st, err := env.Store.State(ctx)
	is.NoErr(err)
	is.Equal(st.FirstSeq, uint64(1))
	is.Equal(st.LastSeq, uint64(3001))
	is.Equal(st.Msgs, uint64(3001))
}

// TestBatchesFollowsLiveEventsAndAName: a batched follow yields what is
// stored from FromSeq, then events appended while it follows, each batch
// saying how many messages were still pending; with a name it is a durable
// consumer of that name on the server; it ends without an error when its
// ctx is done.
func TestBatchesFollowsLiveEventsAndAName(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(10, fixtures.Options{Devices: 3, Events: 600})
	is.NoErr(env.Store.AppendBatch(ctx, evs[:400]))

	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seqs := make(chan uint64, 4096)
	ended := make(chan error, 1)
	go func() {
		var err error
		for b, berr := range env.Store.Batches(fctx, events.Filter{FromSeq: 101}, events.BatchOptions{Follow: true, Name: "batches-test"}) {
			if berr != nil {
				err = berr
				break
			}
			for _, run := range b.Runs {
				for _, d := range run {
					seqs <- d.Seq
				}
			}
		}
		ended <- err
	}()
	next := func() uint64 {
		t.Helper()
		select {
		case s := <-seqs:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("the follow yielded nothing for 10 s")
		}
		return 0
	}
	for want := uint64(101); want <= 400; want++ {
		is.Equal(next(), want)
	}
	_, err := env.JS.Consumer(ctx, events.Stream, "batches-test")
	is.NoErr(err) // named on the server
	is.NoErr(env.Store.AppendBatch(ctx, evs[400:]))
	for want := uint64(401); want <= 600; want++ {
		is.Equal(next(), want)
	}
	cancel()
	select {
	case err := <-ended:
		is.NoErr(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the follow did not end after its ctx was cancelled")
	}
}
