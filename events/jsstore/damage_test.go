package jsstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
)

// damagedLog is a 2,000-event log whose block has 64 bytes flipped at its
// exact middle, inside a record's body (as
// cmd/fleet.TestMessageDamagedInsideItsBodyIsReportedAsAStall damages it):
// the server still counts every message but its consumers stop short.
func damagedLog(t *testing.T) (*eventstest.Env, []events.Event) {
	t.Helper()
	dir := t.TempDir()
	env := eventstest.StartIn(t, dir, true)
	evs := fixtures.GenerateLog(4, fixtures.Options{Devices: 3, Events: 2000})
	if err := env.Store.AppendBatch(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	env.Stop()
	blks, _ := filepath.Glob(filepath.Join(dir, "*", "*", "streams", events.Stream, "msgs", "1.blk"))
	if len(blks) != 1 {
		t.Fatalf("block files: %v", blks)
	}
	b, err := os.ReadFile(blks[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(blks[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	return eventstest.StartIn(t, dir, true), evs
}

// TestReadGetsPastADamagedMessage: on a log damaged inside one message's
// body a read without a deadline used to wait for ever before the message
// its consumer could not get past. Now it ends: every sequence is yielded
// as an event or named by an UnreadableError (errors.Is ErrUnreadable,
// saying what to do), and the events past the damage are read. A read of
// one device ends too, with that device's last event.
func TestReadGetsPastADamagedMessage(t *testing.T) {
	is := is.New(t)
	old := jsstore.ReadStallAfter
	jsstore.ReadStallAfter = 300 * time.Millisecond
	defer func() { jsstore.ReadStallAfter = old }()
	env, evs := damagedLog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // a hang fails, not waits
	defer cancel()
	last, err := env.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(last, uint64(2000)) // the server still counts every message

	seen := map[uint64]bool{}
	var unreadable []*events.UnreadableError
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		var u *events.UnreadableError
		var bad *events.BadMessage
		switch {
		case errors.As(err, &u):
			is.True(errors.Is(err, events.ErrUnreadable))
			is.True(u.Last >= u.Seq)
			for q := u.Seq; q <= u.Last; q++ {
				seen[q] = true
			}
			unreadable = append(unreadable, u)
			t.Log(err)
		case errors.As(err, &bad):
			seen[bad.Seq] = true
			t.Log(err)
		case err != nil:
			t.Fatalf("read ended with %v after %d sequences", err, len(seen))
		default:
			is.Equal(s.ID, evs[s.Seq-1].ID)
			seen[s.Seq] = true
		}
	}
	is.True(len(unreadable) > 0)
	for q := uint64(1); q <= last; q++ {
		if !seen[q] {
			t.Fatalf("sequence %d neither read nor reported", q)
		}
	}
	msg := unreadable[0].Error()
	is.True(len(msg) > 0)
	for _, want := range []string{"sequence", "may be damaged", "--from-seq"} {
		if !contains(msg, want) {
			t.Fatalf("%q does not say %q", msg, want)
		}
	}

	// one device's events, to its last
	var lastOf uint64
	for i, e := range evs {
		if e.Device == "pi-001" {
			lastOf = uint64(i + 1)
		}
	}
	var got uint64
	for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-001"}) {
		if err != nil {
			is.True(errors.Is(err, events.ErrUnreadable) || errors.Is(err, events.ErrInvalid))
			continue
		}
		is.Equal(s.Device, "pi-001")
		got = s.Seq
	}
	is.Equal(got, lastOf)
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestReadGetsPastAConsumerThatStopsDelivering: the read's consumer is
// paused on the server after its first event (it then delivers nothing,
// as before a damaged message, while the stream gives every message by a
// direct get). The read takes the next message from the stream, goes on
// on a new consumer, and yields every event once, in order, no error; its
// consumers are gone once it ends.
func TestReadGetsPastAConsumerThatStopsDelivering(t *testing.T) {
	is := is.New(t)
	old := jsstore.ReadStallAfter
	jsstore.ReadStallAfter = 200 * time.Millisecond
	defer func() { jsstore.ReadStallAfter = old }()
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	evs := fixtures.GenerateLog(7, fixtures.Options{Devices: 4, Events: 6000})
	is.NoErr(env.Store.AppendBatch(ctx, evs))
	before := consumers(t, env)
	st, err := env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	n := 0
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		is.Equal(s.Seq, uint64(n+1))
		is.Equal(s.ID, evs[n].ID)
		if n == 0 {
			names := st.ConsumerNames(ctx)
			paused := 0
			for name := range names.Name() {
				_, err := env.JS.PauseConsumer(ctx, events.Stream, name, time.Now().Add(time.Hour))
				is.NoErr(err)
				paused++
			}
			is.NoErr(names.Err())
			is.Equal(paused, 1)
		}
		n++
	}
	is.Equal(n, len(evs))
	is.Equal(consumers(t, env), before)
}
