package projections

import (
	"context"
	"strconv"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// eventCounter is a read model added the way a new one is: this type and
// one registration (WithModel). It counts each device's events.
type eventCounter struct{ n map[string]int }

func newEventCounter() ReadModel { return &eventCounter{n: map[string]int{}} }

func (c *eventCounter) Kinds() string                      { return "n" }
func (c *eventCounter) Apply(e events.Stored)              { c.n[e.Device]++ }
func (c *eventCounter) Touch(e events.Stored, dirty Dirty) { dirty.Add('n', e.Device, "") }
func (c *eventCounter) Encode(p Part) ([]byte, bool) {
	return []byte(strconv.Itoa(c.n[p.Device])), c.n[p.Device] > 0
}
func (c *eventCounter) Parts(fn func(Part)) {
	for d := range c.n {
		fn(Part{'n', d, ""})
	}
}
func (c *eventCounter) Load(p Part, val []byte) (err error) {
	c.n[p.Device], err = strconv.Atoi(string(val))
	return err
}

// counts reads the counter through Query, as an API would.
func counts(t *testing.T, s *Service) map[string]int {
	t.Helper()
	out := map[string]int{}
	if !Query(s, func(c *eventCounter) {
		for d, n := range c.n {
			out[d] = n
		}
	}) {
		t.Fatal("the event counter is not registered")
	}
	return out
}

func TestANewReadModelIsFoldedPersistedReloadedAndRebuilt(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(21, fixtures.Options{Devices: 4, Events: 1500})
	want := map[string]int{}
	for _, e := range evs {
		want[e.Device]++
	}
	half := appendLog(t, env, evs[:700], false)
	dir := t.TempDir()
	s, err := Open(dir, WithModel(newEventCounter))
	is.NoErr(err)
	runService(t, s, env.Store, half)
	is.NoErr(s.Close())

	last := appendLog(t, env, evs[700:], false)
	s, err = Open(dir, WithModel(newEventCounter)) // reloaded from Pebble, then folded on
	is.NoErr(err)
	is.Equal(s.Checkpoint(), half)
	runService(t, s, env.Store, last)
	is.Equal(counts(t, s), want)                                        // folded
	is.Equal(string(serviceModels(s)), string(readModels(stored(evs)))) // the defaults run beside it as before
	dump, err := s.Dump()
	is.NoErr(err)
	for d, n := range want { // persisted with the checkpoint
		is.Equal(dump["n/"+d], strconv.Itoa(n))
	}
	is.NoErr(s.Close())

	s, err = Open(dir, WithModel(newEventCounter)) // after a restart: as it was
	is.NoErr(err)
	is.Equal(counts(t, s), want)
	is.NoErr(s.Rebuild(context.Background(), env.Store, nil)) // rebuilt beside the live store and swapped in
	is.Equal(counts(t, s), want)
	rebuilt, err := s.Dump()
	is.NoErr(err)
	is.Equal(rebuilt, dump)
	is.NoErr(s.Close())

	// a store written with other models is folded again from the log
	s, err = Open(dir)
	is.NoErr(err)
	is.Equal(s.Checkpoint(), uint64(0))
	is.NoErr(s.Close())
}

func TestModelKindsAreCheckedAtRegistration(t *testing.T) {
	is := is.New(t)
	_, err := Open(t.TempDir(), WithModel(func() ReadModel { return NewDrift() })) // d and r twice
	is.True(err != nil)
	_, err = Open(t.TempDir(), WithModel(func() ReadModel { return &kindModel{"c"} })) // the checkpoint's key
	is.True(err != nil)
}

type kindModel struct{ kinds string }

func (k *kindModel) Kinds() string            { return k.kinds }
func (*kindModel) Apply(events.Stored)        {}
func (*kindModel) Touch(events.Stored, Dirty) {}
func (*kindModel) Encode(Part) ([]byte, bool) { return nil, false }
func (*kindModel) Load(Part, []byte) error    { return nil }
func (*kindModel) Parts(func(Part))           {}
