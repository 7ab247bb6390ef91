package projections

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
)

var update = flag.Bool("update", false, "rewrite golden files and recorded logs")

// recorded logs under fixtures/logs: name, and how it was generated
var recorded = []struct {
	name string
	seed uint64
	opts fixtures.Options
}{
	{"three-devices", 1, fixtures.Options{Devices: 3, Resources: 3, Events: 300, UnknownKind: true, FailureRate: 0.3, DriftRate: 0.2}},
	{"offline-flush", 2, fixtures.Options{Devices: 4, Resources: 4, Events: 800, OfflineRate: 0.1, ManifestRate: 0.05, DriftRate: 0.1}},
}

// stored numbers events as the stream would.
func stored(evs []events.Event) []events.Stored {
	out := make([]events.Stored, len(evs))
	for i, e := range evs {
		out[i] = events.Stored{Event: e, Seq: uint64(i + 1), Subject: must(events.SubjectFor(e))}
	}
	return out
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// readModels folds a log and renders every read model as JSON.
func readModels(evs []events.Stored) []byte {
	f, d := NewFleet(), NewDrift()
	for _, e := range evs {
		f.Apply(e)
		d.Apply(e)
	}
	out := map[string]any{"devices": f.Devices(), "drift": d.All()}
	var ex []Explanation
	for _, dev := range f.Devices() {
		for _, r := range dev.Resources {
			if r.State != "Ready" {
				x, _ := f.Explain(dev.Device, r.ID)
				ex = append(ex, x)
			}
		}
	}
	out["explain"] = ex
	b, _ := json.MarshalIndent(out, "", "  ")
	return append(b, '\n')
}

func TestFoldRecordedLogsMatchGolden(t *testing.T) {
	for _, rec := range recorded {
		t.Run(rec.name, func(t *testing.T) {
			is := is.New(t)
			logPath := filepath.Join("..", "fixtures", "logs", rec.name+".ndjson")
			golden := filepath.Join("testdata", rec.name+".golden.json")
			if *update {
				var buf bytes.Buffer
				is.NoErr(fixtures.WriteLog(&buf, fixtures.GenerateLog(rec.seed, rec.opts)))
				is.NoErr(os.WriteFile(logPath, buf.Bytes(), 0o644))
			}
			evs, err := fixtures.ReadLogFile(logPath)
			is.NoErr(err)
			got := readModels(stored(evs))
			if *update {
				is.NoErr(os.WriteFile(golden, got, 0o644))
			}
			want, err := os.ReadFile(golden)
			is.NoErr(err)
			if !bytes.Equal(got, want) {
				t.Fatalf("read models of %s differ from %s (run with -update after checking the change)", logPath, golden)
			}
		})
	}
}

func TestFoldAppliesRepeatedEventsOnce(t *testing.T) {
	is := is.New(t)
	evs := stored(fixtures.GenerateLog(3, fixtures.Options{Devices: 4, Events: 2000, UnknownKind: true}))
	var twice []events.Stored
	for i, e := range evs {
		twice = append(twice, e)
		if i%3 == 0 { // a retried append stored again right after
			twice = append(twice, e)
		}
	}
	twice = append(twice, evs[:500]...) // an outbox drained again much later
	is.Equal(string(readModels(twice)), string(readModels(evs)))
}

func TestFoldSkipsUndecodablePayload(t *testing.T) {
	is := is.New(t)
	evs := stored(fixtures.GenerateLog(4, fixtures.Options{Devices: 2, Events: 200}))
	bad := evs[10]
	bad.Data = json.RawMessage(`{"to":"Sideways"}`)
	bad.Type = events.TypeStatusChanged
	bad.Resource = "x"
	f := NewFleet()
	f.Apply(bad)
	is.Equal(len(f.Skipped()), 1)
	is.Equal(f.Skipped()[0].Seq, bad.Seq)
	is.Equal(len(f.Devices()), 0) // nothing changed
	NewDrift().Apply(bad)         // no panic
}

func TestFleetDeviceShape(t *testing.T) {
	is := is.New(t)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id string, i int, res string, gen int64, actor string, p events.Payload) events.Stored {
		e := must(events.New("pi-01", res, gen, actor, p))
		e.At = at.Add(time.Duration(i) * time.Second)
		e.ID = fixtureID(i)
		return events.Stored{Event: e, Seq: uint64(i)}
	}
	m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "hi"}}}}
	retry := at.Add(time.Minute)
	log := []events.Stored{
		mk("", 1, "", 0, "agent:pi-01", events.DeviceRegistered{Labels: map[string]string{"site": "a"}, AgentVersion: "1", Kinds: []string{"file"}}),
		mk("", 2, "", 1, "user:ann", events.ManifestApplied{Manifest: m, Digest: m.Digest()}),
		mk("", 3, "motd", 1, "agent:pi-01", events.StatusChanged{Kind: "file", To: "Pending", Trigger: "specChanged"}),
		mk("", 4, "motd", 1, "agent:pi-01", events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"}),
		mk("", 5, "motd", 1, "agent:pi-01", events.ReconcileAttempted{Kind: "file", Attempt: 1, Outcome: "failed", Error: "read-only file system"}),
		mk("", 6, "motd", 1, "agent:pi-01", events.StatusChanged{Kind: "file", From: "Reconciling", To: "Failed", Trigger: "failed", Error: "read-only file system", Attempts: 1, RetryAfter: &retry}),
	}
	f := NewFleet()
	for _, e := range log {
		f.Apply(e)
	}
	d, ok := f.Device("pi-01")
	is.True(ok)
	is.Equal(d.Generation, int64(1))
	is.Equal(d.ObservedGeneration, int64(1)) // Failed is settled
	is.Equal(d.Labels["site"], "a")
	is.Equal(d.Resources[0].State, "Failed")
	is.Equal(d.Resources[0].Error, "read-only file system")
	is.Equal(*d.Resources[0].RetryAfter, retry)
	is.Equal(*d.LastSeen, at.Add(6*time.Second))
	c, _ := d.Condition(CondDegraded)
	is.Equal(c.Status, True)
	c, _ = d.Condition(CondReady)
	is.Equal(c.Status, False)
	var shape map[string]any
	is.NoErr(json.Unmarshal(must(json.Marshal(d)), &shape))
	for _, k := range []string{"device", "labels", "generation", "observedGeneration", "conditions", "lastSeen", "resources"} {
		_, ok := shape[k]
		is.True(ok) // device JSON has every field of the issue
	}
	r := shape["resources"].([]any)[0].(map[string]any)
	for _, k := range []string{"id", "kind", "state", "since", "attempts", "error", "retryAfter"} {
		_, ok := r[k]
		is.True(ok) // resource JSON has every field of the issue
	}
	x, ok := f.Explain("pi-01", "motd")
	is.True(ok)
	is.Equal(x.Manifest.Actor, "user:ann")
	is.Equal(x.Manifest.Generation, int64(1))
	is.Equal(len(x.LastAttempts), 1)
	is.Equal(x.LastAttempts[0].Error, "read-only file system")
	is.Equal(*x.RetryAfter, retry)

	stale := d.WithStale(time.Time{}, at, 30*time.Second)
	c, _ = stale.Condition(CondStale)
	is.Equal(c.Status, True)
	fresh := d.WithStale(at, at.Add(time.Second), 30*time.Second)
	c, _ = fresh.Condition(CondStale)
	is.Equal(c.Status, False)
}

func fixtureID(i int) string {
	return events.Event{}.ID + must(events.ParseULID("01JGFJJZ000000000000000000")).String()[:20] + string("0123456789ABCDEFGHJKMNPQRSTVWXYZ"[i%32]) + "00000"
}

func TestManifestSpecDigestsAreTheResourcesOwnAlsoWhenCached(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 5, Resources: 4, Events: 3000, ManifestRate: 0.2, UnknownKind: true})
	f := NewFleet()
	manifests, cached := 0, 0
	for _, e := range stored(evs) {
		prev := map[string]specDigest{} // the cache before this event
		if d := f.devices[e.Device]; d != nil {
			for id, c := range d.specs {
				prev[id] = *c
			}
		}
		f.Apply(e)
		if e.Type != events.TypeManifestApplied {
			continue
		}
		manifests++
		p := must(e.Payload()).(*events.ManifestApplied)
		got := f.devices[e.Device].Manifest.Resources
		is.Equal(len(got), len(p.Manifest.Resources))
		for i, r := range p.Manifest.Resources {
			is.Equal(got[i].Digest, r.SpecDigest()) // the digest of this manifest's spec, cached or not
			if c, ok := prev[r.ID]; ok && c.digest == got[i].Digest {
				cached++
			}
		}
	}
	is.True(manifests > 20)
	is.True(cached > 0) // unchanged resources took the cache
}

func TestExplainUnreportedResourceDoesNotSayTheAgentIsWorkingOnIt(t *testing.T) {
	is := is.New(t)
	m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "hi"}}}}
	e := must(events.New("pi-01", "", 1, "user:ann", events.ManifestApplied{Manifest: m, Digest: m.Digest()}))
	e.ID = fixtureID(1)
	f := NewFleet()
	f.Apply(events.Stored{Event: e, Seq: 1})
	x, ok := f.Explain("pi-01", "motd")
	is.True(ok)
	why := strings.Join(x.Why, "\n")
	is.True(strings.Contains(why, "the agent has not reported on it yet"))
	is.True(!strings.Contains(why, "working on it")) // nothing says the agent is at it
}
