package projections

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
)

// appendLog appends evs in batches. With again, every event is published a
// second time without its Nats-Msg-Id, as a retry after the duplicate window
// would be: the stream stores it twice.
func appendLog(t testing.TB, env *eventstest.Env, evs []events.Event, again bool) uint64 {
	t.Helper()
	ctx := context.Background()
	if !again {
		if err := env.Store.AppendBatch(ctx, evs); err != nil {
			t.Fatal(err)
		}
	} else {
		for len(evs) > 0 {
			n := min(len(evs), 500)
			var msgs []*nats.Msg
			for _, e := range evs[:n] {
				for range 2 {
					m, err := jsstore.Msg(e)
					if err != nil {
						t.Fatal(err)
					}
					m.Header = nats.Header{}
					msgs = append(msgs, m)
				}
			}
			if _, err := jetstreamext.PublishMsgBatch(ctx, env.JS, msgs); err != nil {
				t.Fatal(err)
			}
			evs = evs[n:]
		}
	}
	last, err := env.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// streamLog reads the whole stream back, as the service sees it.
func streamLog(t testing.TB, env *eventstest.Env) []events.Stored {
	t.Helper()
	var out []events.Stored
	for ev, err := range env.Store.Read(context.Background(), events.Filter{}) {
		if err != nil {
			continue // bad messages: the service skips them too
		}
		out = append(out, ev)
	}
	return out
}

// serviceModels renders a service's read models like readModels does.
func serviceModels(s *Service) []byte {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fleet, _ := find[*Fleet](s.m.set)
	drift, _ := find[*Drift](s.m.set)
	out := map[string]any{"devices": fleet.Devices(), "drift": drift.All()}
	var ex []Explanation
	for _, dev := range fleet.Devices() {
		for _, r := range dev.Resources {
			if r.State != "Ready" {
				x, _ := fleet.Explain(dev.Device, r.ID)
				ex = append(ex, x)
			}
		}
	}
	out["explain"] = ex
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

// runService runs s until the checkpoint reaches seq, then stops it.
func runService(t testing.TB, s *Service, log Log, seq uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, log) }()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := s.WaitFor(wctx, seq); err != nil {
		cancel()
		t.Fatalf("checkpoint %d, want %d: %v", s.Checkpoint(), seq, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestServiceMatchesFoldAndResumesAfterRestart(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(11, fixtures.Options{Devices: 6, Events: 4000, UnknownKind: true})
	half := appendLog(t, env, evs[:2000], false)
	dir := t.TempDir()
	s, err := Open(dir)
	is.NoErr(err)
	runService(t, s, env.Store, half)
	is.NoErr(s.Close())

	last := appendLog(t, env, evs[2000:], false)
	s, err = Open(dir) // resumes at the checkpoint
	is.NoErr(err)
	is.Equal(s.Checkpoint(), half)
	runService(t, s, env.Store, last)
	is.Equal(s.Lag(), uint64(0))
	is.Equal(string(serviceModels(s)), string(readModels(stored(evs))))
	is.NoErr(s.Close())

	s, err = Open(dir) // read models come back from Pebble as they were
	is.NoErr(err)
	is.Equal(string(serviceModels(s)), string(readModels(stored(evs))))
	is.NoErr(s.Close())
}

func TestServiceAppliesEventsStoredTwiceOnce(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(12, fixtures.Options{Devices: 5, Events: 3000})
	last := appendLog(t, env, evs, true)
	is.Equal(last, uint64(2*len(evs))) // the stream holds every event twice
	s, err := Open(t.TempDir())
	is.NoErr(err)
	defer s.Close()
	runService(t, s, env.Store, last)
	log := streamLog(t, env)
	is.Equal(len(log), 2*len(evs))
	is.Equal(string(serviceModels(s)), string(readModels(log)))
	// the same devices as a log holding each event once (sequences aside)
	f := NewFleet()
	for _, e := range stored(evs) {
		f.Apply(e)
	}
	for _, d := range f.Devices() {
		got, ok := s.Device(d.Device)
		is.True(ok)
		is.Equal(string(must(json.Marshal(got))), string(must(json.Marshal(d))))
	}
}

func TestServiceSkipsRedeliveredMessages(t *testing.T) {
	is := is.New(t)
	evs := stored(fixtures.GenerateLog(13, fixtures.Options{Devices: 3, Events: 1000}))
	s, err := Open(t.TempDir())
	is.NoErr(err)
	defer s.Close()
	var items []events.Delivery
	for _, e := range evs {
		items = append(items, events.Delivery{Seq: e.Seq, Stored: e}, events.Delivery{Seq: e.Seq, Stored: e}) // every message delivered twice
	}
	for i := 0; i < len(items); i += 300 {
		s.applyMu.Lock()
		info := s.applyRuns(s.m, [][]events.Delivery{items[i:min(i+300, len(items))]}, true)
		err := s.flush(s.m, true, true, &info)
		s.applyMu.Unlock()
		is.NoErr(err)
	}
	is.Equal(s.Checkpoint(), uint64(len(evs)))
	is.Equal(string(serviceModels(s)), string(readModels(evs)))
}

func TestServiceRecordsBadMessagesAndGoesOn(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(14, fixtures.Options{Devices: 2, Events: 100})
	appendLog(t, env, evs[:50], false)
	_, err := env.JS.Publish(context.Background(), "fleet.pi-001.status.r00", []byte(`{"not":"an event"}`))
	is.NoErr(err)
	last := appendLog(t, env, evs[50:], false)
	s, err := Open(t.TempDir())
	is.NoErr(err)
	defer s.Close()
	runService(t, s, env.Store, last)
	is.Equal(s.Stats().Skipped, uint64(1))
	dump, err := s.Dump()
	is.NoErr(err)
	_, ok := dump["s/00000000000000000051"]
	is.True(ok) // the bad message is recorded with its sequence
	is.Equal(string(serviceModels(s)), string(readModels(streamLog(t, env))))
}

func TestRebuildWhileServingGivesTheLiveModels(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(15, fixtures.Options{Devices: 8, Events: 20000, UnknownKind: true})
	first := appendLog(t, env, evs[:15000], false)
	s, err := Open(t.TempDir())
	is.NoErr(err)
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, env.Store) }()
	is.NoErr(s.WaitFor(ctx, first))
	before := s.Devices()

	// the old models answer during the rebuild, and the log keeps growing
	answered := 0
	rebuilt := make(chan error, 1)
	go func() {
		rebuilt <- s.Rebuild(ctx, env.Store, func(done, total uint64) {
			if d, ok := s.Device(before[0].Device); ok && d.Device == before[0].Device {
				answered++
			}
		})
	}()
	last := appendLog(t, env, evs[15000:], false)
	is.NoErr(<-rebuilt)
	is.True(answered > 0) // the old store answered while the new one was built
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	is.NoErr(s.WaitFor(wctx, last))
	is.Equal(string(serviceModels(s)), string(readModels(stored(evs))))
	cancel()
	is.NoErr(<-done)
}
