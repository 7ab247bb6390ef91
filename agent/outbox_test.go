package agent

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func TestOutboxValueRoundTrips(t *testing.T) {
	is := is.New(t)
	in := encodeOutboxEvent(t, "pi-01", "motd")
	out, err := decodeOutbox(encodeOutbox(in))
	is.NoErr(err)
	is.Equal(out, in) // subject, id and bytes come back as they went in
	_, err = decodeOutbox(encodeOutbox(in)[:10])
	is.True(err != nil) // a truncated value is an error, not a short event
	_, err = decodeOutbox([]byte{9, 1, 2})
	is.True(err != nil) // an unknown format is an error
}

// TestOutboxDrainsEventsWrittenByAnOlderAgent: an outbox written before
// events were kept in wire form (plain JSON values) drains after an upgrade.
func TestOutboxDrainsEventsWrittenByAnOlderAgent(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	state := t.TempDir()
	a, err := New("old-01", WithLog(jsstore.NewLazy(env.Conn)), WithStateDir(state), WithRoot(t.TempDir()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	is.NoErr(err)
	// Two events the way the previous version stored them.
	b := a.db.NewBatch()
	var ids []string
	for i := range 2 {
		e, err := events.New("old-01", "motd", 1, "agent:old-01", &events.StatusChanged{Kind: events.KindFile, From: "", To: "Pending", Trigger: "specChanged"})
		is.NoErr(err)
		a.clock.Stamp(&e)
		data, err := json.Marshal(e)
		is.NoErr(err)
		is.NoErr(b.Set(outboxKey(uint64(i+1)), data, nil))
		ids = append(ids, e.ID)
	}
	is.NoErr(b.Commit(pebble.Sync))
	is.NoErr(a.Close())

	a, err = New("old-01", WithLog(jsstore.NewLazy(env.Conn)), WithStateDir(state), WithRoot(t.TempDir()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	is.NoErr(err)
	defer a.Close()
	is.Equal(a.OutboxLen(), 2)
	is.NoErr(a.Flush(context.Background(), env.Conn))
	is.Equal(a.OutboxLen(), 0)
	var got []string
	for s, err := range env.Store.Read(context.Background(), events.Filter{Device: "old-01"}) {
		is.NoErr(err)
		got = append(got, s.ID)
	}
	is.Equal(got, ids) // both published, in order
}

func encodeOutboxEvent(t *testing.T, device, resource string) jsstore.Encoded {
	t.Helper()
	clock, err := events.NewClock(events.ClockState{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, err := events.New(device, resource, 1, "agent:"+device, &events.StatusChanged{Kind: events.KindFile, From: "Pending", To: "Reconciling", Trigger: "reconcile"})
	if err != nil {
		t.Fatal(err)
	}
	clock.Stamp(&e)
	enc, err := jsstore.EncodedOf(e)
	if err != nil {
		t.Fatal(err)
	}
	return enc
}

// TestRefusedEventIsParkedAndTheRestGoOn: an event the log refuses for good
// (here: larger than the stream takes) is parked in the agent's store with
// the log's answer, and the events before and after it still reach the log,
// in order; a restart keeps it parked and never reuses its place.
func TestRefusedEventIsParkedAndTheRestGoOn(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	env.LimitMessageSize(t, 4096)

	state := t.TempDir()
	open := func() *Agent {
		a, err := New("park-01", WithLog(jsstore.NewLazy(env.Conn)), WithStateDir(state), WithRoot(t.TempDir()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		is.NoErr(err)
		return a
	}
	emit := func(a *Agent, output string) string {
		tx := a.begin()
		e, err := tx.emit("job", 1, "", "", &events.ReconcileAttempted{Kind: events.KindExec, Attempt: 1, Outcome: events.OutcomeSucceeded, Output: output})
		is.NoErr(err)
		_, err = tx.commit()
		is.NoErr(err)
		return e.ID
	}
	logged := func() []string {
		var ids []string
		for s, err := range env.Store.Read(ctx, events.Filter{Device: "park-01"}) {
			is.NoErr(err)
			ids = append(ids, s.ID)
		}
		return ids
	}

	a := open()
	first := emit(a, "small")
	big := emit(a, strings.Repeat("x", 8000))
	third := emit(a, "small again")
	is.NoErr(a.Flush(ctx, env.Conn)) // the refusal does not stop the drain
	is.Equal(a.OutboxLen(), 0)
	is.Equal(a.Parked(), 1)
	is.Equal(logged(), []string{first, third}) // the rest arrived, in order

	parked, err := a.ParkedEvents()
	is.NoErr(err)
	is.Equal(len(parked), 1)
	is.Equal(parked[0].ID, big)
	is.True(strings.Contains(parked[0].Error, "maximum")) // the log's answer is kept
	var kept events.Event
	is.NoErr(json.Unmarshal(parked[0].Event, &kept))
	is.Equal(kept.ID, big) // the event itself is kept, as produced
	is.NoErr(a.Close())

	a = open()
	defer a.Close()
	is.Equal(a.Parked(), 1)
	fourth := emit(a, "after the restart")
	big2 := emit(a, strings.Repeat("y", 8000))
	is.NoErr(a.Flush(ctx, env.Conn))
	is.Equal(logged(), []string{first, third, fourth})
	is.Equal(a.OutboxLen(), 0)
	is.Equal(a.Parked(), 2)
	after, err := a.ParkedEvents()
	is.NoErr(err)
	is.Equal(len(after), 2)
	is.Equal(after[0], parked[0]) // not overwritten by an event after the restart
	is.Equal(after[1].ID, big2)
	is.True(after[1].Seq > after[0].Seq) // a place of its own
}
