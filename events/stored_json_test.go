package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
)

func TestAppendStoredJSONEqualsEncodingJSON(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Events: 2000, UnknownKind: true})
	odd := evs[0]
	odd.Actor, odd.Causation, odd.Correlation = "user:Zoë <ops> & \"co\"", "c\n1", "x"
	odd.Data = json.RawMessage("{\n  \"labels\": {\"a\": \"b c\"},\n \"agentVersion\": \"v\", \"kinds\": []}")
	evs = append(evs, odd)
	for i := range evs { // half of the events carry a writer and its sequence (a fold dedups on them: an export must keep them)
		if i%2 == 1 {
			evs[i].Writer, evs[i].WriterSeq = "01JD2B3C4D5E6F7G8H9JAKBMCN", uint64(i)
		}
	}
	for i, e := range evs {
		s := events.Stored{Event: e, Seq: uint64(i + 1), StreamTime: e.At.Add(3e9), Subject: "fleet.x.y"}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		is.NoErr(enc.Encode(s))
		got := events.AppendStoredJSON(nil, s)
		is.Equal(string(got), string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))))
		want.Reset()
		is.NoErr(enc.Encode(e))
		is.Equal(string(events.AppendEventJSON(nil, e)), string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))))
	}
}

func TestDecodeStoredJSONReadsWhatAppendStoredJSONWrites(t *testing.T) {
	is := is.New(t)
	for i, e := range fixtures.GenerateLog(4, fixtures.Options{Devices: 3, Events: 500, UnknownKind: true}) {
		if i%2 == 1 {
			e.Writer, e.WriterSeq = "01JD2B3C4D5E6F7G8H9JAKBMCN", uint64(i)
		}
		subj, err := events.SubjectFor(e)
		is.NoErr(err)
		s := events.Stored{Event: e, Seq: uint64(i + 1), StreamTime: e.At.Add(3e9).UTC(), Subject: subj}
		got, err := events.DecodeStoredJSON(events.AppendStoredJSON(nil, s))
		is.NoErr(err)
		is.Equal(got.Seq, s.Seq)
		is.True(got.StreamTime.Equal(s.StreamTime))
		is.Equal(got.Subject, s.Subject)
		is.Equal(string(must(json.Marshal(got.Event))), string(must(json.Marshal(s.Event))))
	}
	_, err := events.DecodeStoredJSON(must(json.Marshal(fixtures.GenerateLog(4, fixtures.Options{Devices: 1, Events: 1})[0])))
	is.True(errors.Is(err, events.ErrInvalid)) // an export line (no seq) is not a stored event
	_, err = events.DecodeStoredJSON([]byte(`{"seq":1,"id":"x"}`))
	is.True(errors.Is(err, events.ErrInvalid)) // the event is checked as Decode checks it
}
