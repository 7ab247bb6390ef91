package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/rollout"
)

// exportTampered writes the log to an export, changing the first event of
// type typ of rollout id with tamper (its payload decoded, re-encoded after),
// and runs 'fleet replay --verify --file' on it.
func (f *rolloutFleet) exportTampered(id, typ string, tamper func(e *events.Event, p events.Payload)) (string, int) {
	f.t.Helper()
	path := filepath.Join(f.dir, id+"-"+typ+".ndjson")
	out, err := os.Create(path)
	if err != nil {
		f.t.Fatal(err)
	}
	done := false
	seq := func(yield func(events.Stored, error) bool) {
		for s, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{}) {
			if err == nil && !done && s.Type == typ && s.Resource == id {
				p, perr := s.Payload()
				if perr != nil {
					f.t.Fatal(perr)
				}
				tamper(&s.Event, p)
				if s.Data, err = json.Marshal(p); err != nil {
					f.t.Fatal(err)
				}
				done = true
			}
			if !yield(s, err) {
				return
			}
		}
	}
	if _, err := replay.Export(out, seq); err != nil {
		f.t.Fatal(err)
	}
	out.Close()
	if !done {
		f.t.Fatalf("no %s of rollout %s on the log", typ, id)
	}
	return replayCLI(f.t, "replay", "--verify", "--file", path)
}

// TestRolloutReplayReDerivesEveryGateDecision: a rollout of 4 real agents
// in waves 50%,100% with a soak of 2 s succeeds; 'fleet replay --verify'
// re-derives each WavePassed from the device events before it (every
// member Ready at the generation for the soak) and each wave's membership
// from the hash, and finds the log clean, on the server and on an export.
// The same export with its first WavePassed moved back to the moment its
// wave started (before any device could have soaked) is a gate violation
// naming the device and the soak; one whose WaveStarted names other
// members is a rollout violation.
func TestRolloutReplayReDerivesEveryGateDecision(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 4, false)
	f.start("RV", "--waves", "50%,100%", "--soak", "2s")
	stop := f.controller()
	f.waitRollout("RV", func(r *rollout.Rollout) bool { return r.State == rollout.Succeeded })
	stop()
	is.Equal(f.decisions("RV")[events.TypeWavePassed], 2) // decisions runs the gate check on the server's log
	out, code := replayCLI(t, "replay", "--verify", f.natsF)
	is.Equal(code, 0)
	t.Log(out)

	_, code = f.exportTampered("RV", events.TypeRolloutSucceeded, func(*events.Event, events.Payload) {})
	is.Equal(code, 0) // an export untouched (but re-encoded) is clean

	var waveAt time.Time
	for s, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{SubjectFilters: []string{events.RolloutSubject("RV")}, Types: []string{events.TypeWaveStarted}}) {
		is.NoErr(err)
		waveAt = s.At
		break
	}
	out, code = f.exportTampered("RV", events.TypeWavePassed, func(e *events.Event, _ events.Payload) { e.At = waveAt.Add(time.Millisecond) })
	is.Equal(code, 1)
	is.True(strings.Contains(out, "gate"))
	is.True(strings.Contains(out, "less than the soak of 2s") || strings.Contains(out, "never Ready"))
	t.Log(out)

	out, code = f.exportTampered("RV", events.TypeWaveStarted, func(_ *events.Event, p events.Payload) {
		w := p.(*events.WaveStarted)
		w.Devices = []string{"pi-000", "pi-001", "pi-002"}
	})
	is.Equal(code, 1)
	is.True(strings.Contains(out, "membership"))
}
