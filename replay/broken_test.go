package replay_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/rollout"
)

var updateBroken = flag.Bool("update-broken", false, "rewrite fixtures/broken/*.ndjson from the builders in this file")

const brokenDir = "../fixtures/broken"

// logBuilder writes hand-made logs: one control-plane writer and one agent
// per device, each with its own monotonic clock on a fixed timeline.
type logBuilder struct {
	t      *testing.T
	now    time.Time
	clocks map[string]*events.Clock
	evs    []events.Event
}

func newLog(t *testing.T) *logBuilder {
	return &logBuilder{t: t, now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), clocks: map[string]*events.Clock{}}
}

func (b *logBuilder) clock(actor string) *events.Clock {
	c := b.clocks[actor]
	if c == nil {
		c, _ = events.NewClock(events.ClockState{}, func() time.Time { return b.now })
		b.clocks[actor] = c
	}
	return c
}

// add appends an event stamped by actor's clock, one second after the last.
func (b *logBuilder) add(actor, device, resource string, gen int64, p events.Payload) events.Event {
	b.t.Helper()
	b.now = b.now.Add(time.Second)
	e, err := events.New(device, resource, gen, actor, p)
	if err != nil {
		b.t.Fatal(err)
	}
	b.clock(actor).Stamp(&e)
	b.evs = append(b.evs, e)
	return e
}

func manifestOf(ids ...string) events.ManifestApplied {
	var m events.Manifest
	for _, id := range ids {
		m.Resources = append(m.Resources, events.Resource{ID: id, Kind: events.KindFile,
			File: &events.FileSpec{Path: "/etc/" + id, Content: id + "\n"}})
	}
	return events.ManifestApplied{Manifest: m, Digest: m.Digest()}
}

func (b *logBuilder) manifest(device string, gen int64, ids ...string) {
	m := manifestOf(ids...)
	b.add("user:ops", device, "", gen, &m)
}

func (b *logBuilder) status(device, res string, gen int64, from, to, trigger string) {
	b.add("agent:"+device, device, res, gen, &events.StatusChanged{Kind: events.KindFile, From: from, To: to, Trigger: trigger})
}

func (b *logBuilder) attempt(device, res string, gen int64, outcome, errText string) {
	b.add("agent:"+device, device, res, gen, &events.ReconcileAttempted{Kind: events.KindFile, Attempt: 1,
		Duration: 3 * time.Millisecond, Outcome: outcome, Error: errText, Changed: outcome == events.OutcomeSucceeded})
}

// converge takes a resource from nothing to Ready.
func (b *logBuilder) converge(device, res string, gen int64, from string) {
	b.status(device, res, gen, from, "Pending", "specChanged")
	b.status(device, res, gen, "Pending", "Reconciling", "reconcile")
	b.attempt(device, res, gen, events.OutcomeSucceeded, "")
	b.status(device, res, gen, "Reconciling", "Ready", "succeeded")
}

// goodLog is a valid history: registration, two generations, a failure and
// retry, drift corrected, a removal, a rejected manifest, a second device.
func goodLog(t *testing.T) *logBuilder {
	b := newLog(t)
	b.add("agent:pi-01", "pi-01", "", 0, &events.DeviceRegistered{AgentVersion: "v0.1.0", Kinds: events.Kinds, Labels: map[string]string{"site": "lab"}})
	b.manifest("pi-01", 1, "motd", "app")
	b.converge("pi-01", "motd", 1, "")
	b.status("pi-01", "app", 1, "", "Pending", "specChanged")
	b.status("pi-01", "app", 1, "Pending", "Reconciling", "reconcile")
	b.attempt("pi-01", "app", 1, events.OutcomeFailed, "disk full")
	b.status("pi-01", "app", 1, "Reconciling", "Failed", "failed")
	b.status("pi-01", "app", 1, "Failed", "Reconciling", "reconcile")
	b.attempt("pi-01", "app", 1, events.OutcomeSucceeded, "")
	b.status("pi-01", "app", 1, "Reconciling", "Ready", "succeeded")
	b.add("agent:pi-01", "pi-01", "motd", 1, &events.DriftDetected{Kind: events.KindFile, Policy: events.DriftCorrect,
		Differences: []events.Difference{{Field: "content", Expected: "motd\n", Observed: "hacked\n"}}})
	b.status("pi-01", "motd", 1, "Ready", "Reconciling", "reconcile")
	b.attempt("pi-01", "motd", 1, events.OutcomeSucceeded, "")
	b.status("pi-01", "motd", 1, "Reconciling", "Ready", "succeeded")
	b.add("agent:pi-02", "pi-02", "", 0, &events.DeviceRegistered{AgentVersion: "v0.1.0", Kinds: events.Kinds})
	b.manifest("pi-02", 1, "motd")
	b.converge("pi-02", "motd", 1, "")
	b.manifest("pi-01", 2, "motd", "banner")
	b.status("pi-01", "app", 2, "Ready", "Removed", "removed")
	b.converge("pi-01", "banner", 2, "")
	b.add("agent:pi-01", "pi-01", "", 2, &events.ManifestRejected{Reason: "bad signature", Generation: 3, KeptGeneration: 2})
	return b
}

// brokenLogs builds one log per violation kind: the good log plus one fault.
func brokenLogs(t *testing.T) map[string][]byte {
	out := map[string][]byte{}
	write := func(name string, evs []events.Event, extra ...string) {
		var buf bytes.Buffer
		for _, e := range evs {
			if err := replay.WriteEvent(&buf, e); err != nil {
				t.Fatal(err)
			}
		}
		for _, l := range extra {
			buf.WriteString(l + "\n")
		}
		out[name] = buf.Bytes()
	}
	write("good.ndjson", goodLog(t).evs)

	b := goodLog(t) // Ready straight back to Pending is fine; Ready to Failed is not
	b.status("pi-02", "motd", 1, "Ready", "Failed", "failed")
	write(replay.ViolationTransition+".ndjson", b.evs)

	b = goodLog(t) // a resource's events go back to an older generation
	b.attempt("pi-01", "banner", 1, events.OutcomeSucceeded, "")
	write(replay.ViolationGeneration+".ndjson", b.evs)

	b = goodLog(t) // pi-02's agent writes an event stamped before its previous one
	e, err := events.New("pi-02", "motd", 1, "agent:pi-02", &events.DriftDetected{Kind: events.KindFile, Policy: events.DriftReport,
		Differences: []events.Difference{{Field: "mode", Expected: "0644", Observed: "0600"}}})
	if err != nil {
		t.Fatal(err)
	}
	e.At = time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)
	e.ID = "01KQGRKX00AAAAAAAAAAAAAAAA" // 2026-05-01T11:00:00Z, before the agent's previous ids
	b.evs = append(b.evs, e)
	write(replay.ViolationWriterOrder+".ndjson", b.evs)

	b = goodLog(t) // a retried publish stored twice
	b.evs = append(b.evs, b.evs[5])
	write(replay.ViolationDuplicateID+".ndjson", b.evs)

	b = goodLog(t) // a status for a resource generation 2 does not have
	b.converge("pi-01", "ghost", 2, "")
	write(replay.ViolationNotInManifest+".ndjson", b.evs)

	b = goodLog(t) // a message that is not an event
	write(replay.ViolationUndecodable+".ndjson", b.evs, `{"id":"not-a-ulid","type":"StatusChanged"}`)

	b = goodLog(t) // pi-01's status claiming pi-02 wrote it (events.CheckWriter)
	b.add("agent:pi-02", "pi-01", "motd", 1, &events.StatusChanged{Kind: events.KindFile, From: "Ready", To: "Failed", Trigger: "failed", Error: "pi-02 did it"})
	write(replay.ViolationForged+".ndjson", b.evs)

	b = goodLog(t) // a rollout whose first wave is not the one the hash of rollout and device ids gives
	b.add("user:ops", "", "r1", 0, &events.RolloutStarted{Selector: "site=lab", Waves: []string{"50%", "100%"},
		Devices: []string{"pi-01", "pi-02"}, OnFailure: events.OnFailurePause, Digest: manifestOf("motd").Digest, Manifest: manifestOf("motd").Manifest})
	wrong := rollout.Plan("r1", []string{"pi-01", "pi-02"}, []string{"50%", "100%"})[1]
	b.add("user:ops", "", "r1", 0, &events.WaveStarted{Wave: 0, Devices: wrong})
	write(replay.ViolationRollout+".ndjson", b.evs)
	return out
}

func TestBrokenFixturesUpToDate(t *testing.T) {
	if !*updateBroken {
		t.Skip("run with -update-broken to rewrite fixtures/broken")
	}
	is := is.New(t)
	is.NoErr(os.MkdirAll(brokenDir, 0o755))
	for name, data := range brokenLogs(t) {
		is.NoErr(os.WriteFile(filepath.Join(brokenDir, name), data, 0o644))
	}
}

func verifyFile(t *testing.T, name string) replay.Report {
	t.Helper()
	f, err := os.Open(filepath.Join(brokenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := replay.Verify(replay.ReadNDJSON(f), true)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestVerifyPassesGoodLog(t *testing.T) {
	is := is.New(t)
	rep := verifyFile(t, "good.ndjson")
	is.Equal(rep.Violations, []replay.Violation(nil)) // no violations
	is.Equal(rep.Devices, 2)
	is.Equal(rep.Events, 30)
	is.True(rep.OK())
}

func TestVerifyCatchesEachViolationKind(t *testing.T) {
	for _, kind := range replay.ViolationKinds {
		t.Run(kind, func(t *testing.T) {
			is := is.New(t)
			rep := verifyFile(t, kind+".ndjson")
			is.True(!rep.OK())
			var kinds []string
			for k := range rep.ByKind {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			is.Equal(kinds, []string{kind}) // the one fault, and only it
			last := rep.Violations[len(rep.Violations)-1]
			is.True(last.Seq > 30) // named by its sequence (line), the fault is near the end
			t.Log(rep.Violations, rep.SummaryLine())
		})
	}
}

func TestVerifyReportsSequenceAndRule(t *testing.T) {
	is := is.New(t)
	rep := verifyFile(t, replay.ViolationTransition+".ndjson")
	is.Equal(len(rep.Violations), 1)
	v := rep.Violations[0]
	is.Equal(v.Device, "pi-02")
	is.Equal(v.Resource, "motd")
	is.Equal(v.Detail, "Ready -> Failed: the fsm table has no such transition")
	lines := bytes.Count(mustRead(t, replay.ViolationTransition+".ndjson"), []byte("\n"))
	is.Equal(v.Seq, uint64(lines)) // the last line
}

func TestVerifyContinuityAndPartialLogs(t *testing.T) {
	is := is.New(t)
	b := newLog(t)
	b.manifest("pi-01", 1, "motd")
	b.converge("pi-01", "motd", 1, "")
	b.status("pi-01", "motd", 1, "Pending", "Reconciling", "reconcile") // table allows it, but motd was Ready
	rep := verify(t, b.evs, true)
	is.Equal(len(rep.Violations), 1)
	is.Equal(rep.Violations[0].Kind, replay.ViolationTransition)

	// a part of the log that starts mid-history is not held to "starts from nothing"
	rep = verify(t, b.evs[3:5], false)
	is.True(rep.OK())
	rep = verify(t, b.evs[3:5], true)
	is.Equal(rep.ByKind[replay.ViolationTransition], 1)
	is.Equal(rep.ByKind[replay.ViolationNotInManifest], 1) // called complete, yet generation 1 was never applied
}

func verify(t *testing.T, evs []events.Event, complete bool) replay.Report {
	v := replay.NewVerifier(complete)
	for i, e := range evs {
		v.Add(events.Stored{Event: e, Seq: uint64(i + 1)})
	}
	return v.Report()
}

func mustRead(t *testing.T, name string) []byte {
	b, err := os.ReadFile(filepath.Join(brokenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The recorded logs in fixtures/logs pass verify.
func TestVerifyPassesRecordedLogs(t *testing.T) {
	is := is.New(t)
	files, err := filepath.Glob(filepath.Join("..", "fixtures", "logs", "*.ndjson"))
	is.NoErr(err)
	if len(files) == 0 {
		t.Fatal("no recorded logs in fixtures/logs: they are committed, and this test is only worth something with them")
	}
	for _, name := range files {
		f, err := os.Open(name)
		is.NoErr(err)
		rep, err := replay.Verify(replay.ReadNDJSON(f), true)
		f.Close()
		is.NoErr(err)
		if !rep.OK() {
			t.Errorf("%s: %s: %v", name, rep.SummaryLine(), rep.Violations[:min(5, len(rep.Violations))])
		}
	}
}
