package jsstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func manifest(content string) events.Manifest {
	return events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile,
		File: &events.FileSpec{Path: "/etc/motd", Content: content, Mode: "0644"}}}}
}

func newClock(t *testing.T) *events.Clock {
	c, err := events.NewClock(events.ClockState{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRacingAppliesOneWinsEachRound: two writers read the same last manifest
// and race to append the next generation, 50 times. Each round exactly one
// wins and the other gets a ConflictError with the expected and actual
// sequence; the log holds generations 1..50 with no gap.
func TestRacingAppliesOneWinsEachRound(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	clock := newClock(t)
	const device = "pi-01"
	for round := 1; round <= 50; round++ {
		var expected uint64
		var gen int64
		if last, err := env.Store.LastManifest(ctx, device); err == nil {
			expected, gen = last.Seq, last.Generation
		} else {
			is.True(errors.Is(err, events.ErrNotFound))
		}
		var wg sync.WaitGroup
		results := make([]error, 2)
		start := make(chan struct{})
		for w := 0; w < 2; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				<-start
				_, results[w] = events.ApplyAfter(ctx, env.Store, clock, device, manifest(fmt.Sprintf("round %d writer %d\n", round, w)),
					fmt.Sprintf("user:writer%d", w), nil, expected, gen)
			}(w)
		}
		close(start)
		wg.Wait()
		wins, conflicts := 0, 0
		for _, err := range results {
			var ce *events.ConflictError
			switch {
			case err == nil:
				wins++
			case errors.As(err, &ce):
				conflicts++
				is.True(errors.Is(err, events.ErrConflict))
				is.Equal(ce.Expected, expected)
				is.True(ce.Actual > expected) // the winner's sequence
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		is.Equal(wins, 1)
		is.Equal(conflicts, 1)
		last, err := env.Store.LastManifest(ctx, device)
		is.NoErr(err)
		is.Equal(last.Generation, int64(round))
	}
	var gens []int64
	for s, err := range env.Store.Read(ctx, events.Filter{Device: device, Types: []string{events.TypeManifestApplied}}) {
		is.NoErr(err)
		gens = append(gens, s.Generation)
	}
	is.Equal(len(gens), 50)
	for i, g := range gens {
		is.Equal(g, int64(i+1))
	}
}

func statusEvent(t *testing.T, c *events.Clock, device, res string, from, to string) events.Event {
	e, err := events.New(device, res, 1, "agent:"+device, &events.StatusChanged{Kind: "file", From: from, To: to, Trigger: "reconcile"})
	if err != nil {
		t.Fatal(err)
	}
	c.Stamp(&e)
	return e
}

// TestSameEventAppendedTwiceIsStoredOnce: the event id is the Nats-Msg-Id, so
// a retried append (a lost ack) is dropped by the stream, singly and in batches.
func TestSameEventAppendedTwiceIsStoredOnce(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	e := statusEvent(t, c, "pi-01", "motd", "", "Pending")
	seq1, dup1, err := env.Store.Append(ctx, e)
	is.NoErr(err)
	is.True(!dup1)
	seq2, dup2, err := env.Store.Append(ctx, e)
	is.NoErr(err)
	is.True(dup2)
	is.Equal(seq1, seq2)

	batch := []events.Event{e, statusEvent(t, c, "pi-01", "motd", "Pending", "Reconciling")}
	is.NoErr(env.Store.AppendBatch(ctx, batch))
	is.NoErr(env.Store.AppendBatch(ctx, batch))
	n := 0
	ids := map[string]bool{}
	for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-01"}) {
		is.NoErr(err)
		is.True(!ids[s.ID])
		ids[s.ID] = true
		n++
	}
	is.Equal(n, 2)
}

// TestDeviceEventsComeBackInOrderWritten: singles and batches interleaved
// across devices; each device's events read back in the order written, and
// filters by resource, type and sequence select exactly their part.
func TestDeviceEventsComeBackInOrderWritten(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	written := map[string][]string{}
	states := []string{"Pending", "Reconciling", "Ready"}
	for i := 0; i < 30; i++ {
		var batch []events.Event
		for _, d := range []string{"pi-01", "pi-02", "pi-03"} {
			res := fmt.Sprintf("r%d", i%4)
			e := statusEvent(t, c, d, res, "", states[i%3])
			written[d] = append(written[d], e.ID)
			batch = append(batch, e)
		}
		if i%2 == 0 {
			is.NoErr(env.Store.AppendBatch(ctx, batch))
		} else {
			for _, e := range batch {
				_, _, err := env.Store.Append(ctx, e)
				is.NoErr(err)
			}
		}
	}
	for d, want := range written {
		var got []string
		var lastSeq uint64
		for s, err := range env.Store.Read(ctx, events.Filter{Device: d}) {
			is.NoErr(err)
			is.True(s.Seq > lastSeq)
			lastSeq = s.Seq
			got = append(got, s.ID)
		}
		is.Equal(got, want)
	}
	n := 0
	for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-02", Resource: "r1"}) {
		is.NoErr(err)
		is.Equal(s.Resource, "r1")
		n++
	}
	is.Equal(n, 8) // i = 1, 5, 9, ..., 29
	n = 0
	for s, err := range env.Store.Read(ctx, events.Filter{FromSeq: 10, ToSeq: 19}) {
		is.NoErr(err)
		is.True(s.Seq >= 10 && s.Seq <= 19)
		n++
	}
	is.Equal(n, 10)
	n = 0
	for range env.Store.Read(ctx, events.Filter{Device: "nobody"}) {
		n++
	}
	is.Equal(n, 0) // an empty match ends at once instead of waiting for new events
}

// TestStreamConfigCreatedOnceAndReappliedWithoutChange: opening the store
// twice leaves the stream as it was (same creation time, same config), and a
// drifted config is brought back.
func TestStreamConfigCreatedOnceAndReappliedWithoutChange(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	s1, err := env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	info1 := s1.CachedInfo()
	_, err = jsstore.Open(ctx, env.JS, jsstore.Config{})
	is.NoErr(err)
	s2, err := env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	info2 := s2.CachedInfo()
	is.Equal(info1.Created, info2.Created)
	is.Equal(info1.Config.Duplicates, info2.Config.Duplicates)
	is.True(info2.Config.AllowDirect)
	is.True(info2.Config.AllowAtomicPublish)
	is.Equal(info2.Config.Subjects, []string{"fleet.>"})

	cfg := info2.Config
	cfg.Duplicates = time.Minute
	_, err = env.JS.UpdateStream(ctx, cfg)
	is.NoErr(err)
	_, err = jsstore.Open(ctx, env.JS, jsstore.Config{})
	is.NoErr(err)
	s3, err := env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	is.Equal(s3.CachedInfo().Config.Duplicates, jsstore.DefaultDuplicateWindow)
	is.Equal(s3.CachedInfo().Created, info1.Created)
}

// TestMalformedMessagesAreReportedAndSkipped: a reader meets junk published
// straight onto a fleet subject and gets a BadMessage with its sequence,
// then the valid events after it.
func TestMalformedMessagesAreReportedAndSkipped(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	_, err := env.JS.Publish(ctx, "fleet.pi-01.status.motd", []byte(`{"id":"trunc`))
	is.NoErr(err)
	_, _, err = env.Store.Append(ctx, statusEvent(t, c, "pi-01", "motd", "", "Pending"))
	is.NoErr(err)
	var bad []uint64
	good := 0
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		var bm *events.BadMessage
		if errors.As(err, &bm) {
			is.True(errors.Is(err, events.ErrInvalid))
			bad = append(bad, bm.Seq)
			continue
		}
		is.NoErr(err)
		is.Equal(s.Seq, uint64(2))
		good++
	}
	is.Equal(bad, []uint64{1})
	is.Equal(good, 1)
}

func TestAppendRefusesInvalidEventsAndWritesNothing(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	c := newClock(t)
	e := statusEvent(t, c, "pi-01", "motd", "", "Pending")
	e.Device = "a.b"
	_, _, err := env.Store.Append(ctx, e)
	is.True(errors.Is(err, events.ErrInvalid))
	good := statusEvent(t, c, "pi-01", "motd", "", "Pending")
	bad := statusEvent(t, c, "pi-01", "x", "", "Pending")
	bad.Resource = "*"
	is.True(errors.Is(env.Store.AppendBatch(ctx, []events.Event{good, bad}), events.ErrInvalid))
	seq, err := env.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(seq, uint64(0)) // nothing of the batch was written
}
