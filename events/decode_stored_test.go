package events_test

import (
	"encoding/json"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func TestDecodeStoredKeepsThePayloadDecodeChecked(t *testing.T) {
	is := is.New(t)
	e := validEvent(t)
	b, err := events.Encode(e)
	is.NoErr(err)
	st, err := events.DecodeStored(b)
	is.NoErr(err)
	want, err := events.Decode(b)
	is.NoErr(err)
	is.Equal(string(must(json.Marshal(st.Event))), string(must(json.Marshal(want))))
	p1, err := st.Payload() // the cached payload
	is.NoErr(err)
	p2, err := st.Event.Payload() // decoded again
	is.NoErr(err)
	is.Equal(p1, p2)
	is.Equal(p1.(*events.StatusChanged).To, "Reconciling")
}

func TestDecodeStoredRefusesWhatDecodeRefusesWithTheSameError(t *testing.T) {
	is := is.New(t)
	e := validEvent(t)
	good, err := events.Encode(e)
	is.NoErr(err)
	for _, b := range [][]byte{
		[]byte(`{"not":"an event"}`),
		good[:len(good)-3],
		[]byte(`{"id":"x","type":"StatusChanged","schema":1,"device":"pi-01","resource":"motd","generation":1,"at":"2025-01-01T00:00:00Z","actor":"agent:pi-01","data":{"to":"Ready"}}`),
		[]byte(`{"id":"` + e.ID + `","type":"StatusChanged","schema":1,"device":"pi-01","resource":"motd","generation":1,"at":"2025-01-01T00:00:00Z","actor":"agent:pi-01","data":{"to":"Sideways"}}`),
	} {
		_, want := events.Decode(b)
		is.True(want != nil)
		_, got := events.DecodeStored(b)
		is.True(got != nil)
		is.Equal(got.Error(), want.Error())
	}
}

func TestStoredWithoutCacheDecodesItsPayload(t *testing.T) {
	is := is.New(t)
	st := events.Stored{Event: validEvent(t), Seq: 7}
	p, err := st.Payload()
	is.NoErr(err)
	is.Equal(p.(*events.StatusChanged).Trigger, "reconcile")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
