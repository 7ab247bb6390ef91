package projections

import (
	"context"
	"encoding/binary"
	"errors"
	stdmaps "maps"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// counter is a RecordModel: events per device, one record each
// (k<device> -> count), written by the model itself.
type counter struct {
	NoParts
	db      *pebble.DB
	n       map[string]uint64 // as applied
	stored  map[string]uint64 // as in the store: what it answers
	pending map[string]bool
}

func newCounter() ReadModel {
	return &counter{n: map[string]uint64{}, stored: map[string]uint64{}, pending: map[string]bool{}}
}

func (c *counter) Kinds() string { return "k" }

func (c *counter) Apply(e events.Stored) {
	if e.Device != "" {
		c.n[e.Device]++
		c.pending[e.Device] = true
	}
}

func (c *counter) WriteRecords(b *pebble.Batch) error {
	for dev := range c.pending {
		if err := b.Set(append([]byte("k"), dev...), binary.BigEndian.AppendUint64(nil, c.n[dev]), nil); err != nil {
			return err
		}
	}
	return nil
}

func (c *counter) Committed() {
	for dev := range c.pending {
		c.stored[dev] = c.n[dev]
	}
	clear(c.pending)
}

func (c *counter) LoadRecords(db *pebble.DB) error {
	c.db = db
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte("k"), UpperBound: []byte("l")})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if len(it.Value()) != 8 {
			return errBadCount
		}
		c.n[string(it.Key()[1:])] = binary.BigEndian.Uint64(it.Value())
	}
	stdmaps.Copy(c.stored, c.n)
	return it.Error()
}

var errBadCount = errors.New("a count of other than 8 bytes")

// TestRuntimeRunsARecordModelUnderItsOwnName: WithModels and WithName run
// a model that writes its own records on the runtime: folded with the
// checkpoint, loaded again on Open, rebuilt beside the live store, and a
// record that does not decode starts the store again from the log with the
// runtime's name in what Recovered says.
func TestRuntimeRunsARecordModelUnderItsOwnName(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(8, fixtures.Options{Devices: 3, Events: 900})
	last := appendLog(t, env, evs, false)
	want := map[string]uint64{}
	for _, e := range evs {
		want[e.Device]++
	}
	counts := func(s *Service) map[string]uint64 {
		var out map[string]uint64
		is.True(Query(s, func(c *counter) { out = stdmaps.Clone(c.stored) }))
		return out
	}
	dir := t.TempDir()
	open := func() *Service {
		s, err := Open(dir, WithModels(newCounter), WithName("event counter"), WithDurable(""))
		is.NoErr(err)
		return s
	}
	s := open()
	runService(t, s, env.Store, last)
	is.Equal(counts(s), want)
	is.True(!Query(s, func(*Fleet) {})) // its models only
	is.NoErr(s.Close())

	s = open() // loaded from its records, at its checkpoint
	is.Equal(s.Checkpoint(), last)
	is.Equal(counts(s), want)
	is.NoErr(s.Rebuild(context.Background(), env.Store, nil))
	is.Equal(counts(s), want)
	is.Equal(s.Checkpoint(), last)
	is.NoErr(s.Close())

	// a record that does not decode: started again from the log
	s = open()
	var db *pebble.DB
	Query(s, func(c *counter) { db = c.db })
	is.NoErr(db.Set([]byte("kpi-001"), []byte("x"), pebble.NoSync))
	is.NoErr(s.Close())
	s = open()
	t.Log(s.Recovered())
	is.True(strings.Contains(s.Recovered(), "event counter in "))
	is.True(strings.Contains(s.Recovered(), "was damaged"))
	is.Equal(s.Checkpoint(), uint64(0))
	runService(t, s, env.Store, last)
	is.Equal(counts(s), want)
	is.NoErr(s.Close())

	_, err := Open(t.TempDir(), WithModels())
	is.True(err != nil && strings.Contains(err.Error(), "WithModels"))
}

// TestRebuildWritesThePartsBesideARecordModel: a record model beside the
// default models writes its records as a rebuild goes, so the checkpoint
// moves before the end; the rebuild still writes every part of the others,
// and a reopened store answers as the fold.
func TestRebuildWritesThePartsBesideARecordModel(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(6, fixtures.Options{Devices: 4, Events: 3000})
	last := appendLog(t, env, evs, false)
	dir := t.TempDir()
	s, err := Open(dir, WithModel(newCounter), WithMaxBatch(500))
	is.NoErr(err)
	is.NoErr(s.Rebuild(context.Background(), env.Store, nil))
	is.Equal(s.Checkpoint(), last)
	is.NoErr(s.Close())
	s, err = Open(dir, WithModel(newCounter))
	is.NoErr(err)
	defer s.Close()
	is.Equal(s.Recovered(), "")
	is.Equal(string(serviceModels(s)), string(readModels(stored(evs))))
}
