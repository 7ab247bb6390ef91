package events_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/fleet-dev/fleet/events"
)

// FuzzDecode: any bytes off the wire either decode to an event that passes
// Check and re-encodes, or are refused with an error wrapping ErrInvalid.
func FuzzDecode(f *testing.F) {
	e, _ := events.New("pi-01", "motd", 1, "agent:pi-01", &events.StatusChanged{Kind: "file", To: "Pending", Trigger: "specChanged"})
	c, _ := events.NewClock(events.ClockState{}, nil)
	c.Stamp(&e)
	good, _ := events.Encode(e)
	f.Add(good)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"01J0000000000000000000000","type":"ManifestApplied","schema":1,"device":"d","generation":1,"at":"2026-01-01T00:00:00Z","actor":"u","data":{"manifest":{"resources":[{"id":"x","helm":{}}]},"digest":""}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := events.Decode(b)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("rejection does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := ev.Check(); err != nil {
			t.Fatalf("decoded event fails Check: %v", err)
		}
		if _, err := events.Encode(ev); err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
	})
}

// FuzzParseManifest: any input is a valid manifest (which validates again
// and round-trips through its JSON form) or an error wrapping ErrInvalid.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hello\\n\", mode: \"0644\"}\n"))
	f.Add([]byte(`{"resources":[{"id":"a","exec":{"argv":["x"],"timeout":"1s"}}]}`))
	f.Add([]byte("resources:\n  - id: w\n    container: {image: nginx, ports: ['80:80']}\n"))
	f.Add([]byte("resources: [{id: a, systemdUnit: {name: a.service, content: x}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := events.ParseManifest(b)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("rejection does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest fails Validate: %v", err)
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		again, err := events.ParseManifest(js)
		if err != nil {
			t.Fatalf("canonical form %s does not parse: %v", js, err)
		}
		if again.Digest() != m.Digest() {
			t.Fatalf("digest changed across a round trip")
		}
	})
}
