package replay_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay"
)

func TestAppendStoredEqualsEncodingJSON(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Events: 2000, UnknownKind: true})
	evs = append(evs, goodLog(t).evs...)
	odd := evs[0]
	odd.Actor, odd.Causation, odd.Correlation = "user:Zoë <ops> & \"co\"", "c\n1", "x"
	odd.Data = json.RawMessage("{\n  \"labels\": {\"a\": \"b c\"},\n \"agentVersion\": \"v\", \"kinds\": []}")
	evs = append(evs, odd)
	for i, e := range evs {
		s := events.Stored{Event: e, Seq: uint64(i + 1), StreamTime: e.At.Add(3e9), Subject: "fleet.x.y"}
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		is.NoErr(enc.Encode(s))
		got := replay.AppendStored(nil, s)
		is.Equal(string(got), string(bytes.TrimSuffix(want.Bytes(), []byte("\n"))))
	}
}
