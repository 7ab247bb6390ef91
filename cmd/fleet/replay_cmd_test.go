package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

var brokenFixtures = filepath.Join("..", "..", "fixtures", "broken")

// replayCLI runs fleet with args and returns what it printed on stdout and its exit code.
func replayCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var code int
	out := captureStdout(t, func() { code = run(args) })
	return out, code
}

func captureStdout(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	defer func() { os.Stdout = old }()
	fn()
	w.Close()
	return <-done
}

func TestReplayCommandPrintsFiltersAndVerifies(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	url := "--nats=" + env.Server.URL()
	good := filepath.Join(brokenFixtures, "good.ndjson")

	out, code := replayCLI(t, "import", good, url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "30 stored"))
	_, code = replayCLI(t, "import", good, url) // the target is no longer empty
	is.Equal(code, 2)

	out, code = replayCLI(t, "replay", url)
	is.Equal(code, 0)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	is.Equal(len(lines), 31) // header and 30 events
	is.True(strings.HasPrefix(lines[0], "SEQ"))
	is.True(strings.Contains(lines[3], "(new) -> Pending (specChanged)"))

	out, code = replayCLI(t, "replay", url, "--device", "pi-02", "-o", "ndjson")
	is.Equal(code, 0)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	is.Equal(len(lines), 6)
	var s events.Stored
	is.NoErr(json.Unmarshal([]byte(lines[1]), &s))
	is.Equal(s.Device, "pi-02")
	is.Equal(s.Type, events.TypeManifestApplied)
	is.True(s.Seq > 0 && !s.StreamTime.IsZero())

	out, code = replayCLI(t, "replay", url, "--device", "pi-01", "--resource", "app", "--type", "StatusChanged",
		"--since", "2026-05-01T12:00:08Z", "--until", "2026-05-01T12:00:11Z", "-o", "json")
	is.Equal(code, 0)
	var got []struct {
		Seq     uint64 `json:"seq"`
		Summary string `json:"summary"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &got))
	is.Equal(len(got), 3) // Pending->Reconciling, ->Failed, Failed->Reconciling
	is.Equal(got[1].Summary, "Reconciling -> Failed (failed)")

	out, code = replayCLI(t, "replay", url, "--from-seq", "5", "--to-seq", "7", "-o", "ndjson")
	is.Equal(code, 0)
	is.Equal(strings.Count(out, "\n"), 3)

	out, code = replayCLI(t, "replay", url, "--verify")
	is.Equal(code, 0)
	is.Equal(strings.TrimSpace(out), "verified 30 events of 2 devices: 0 violations")

	out, code = replayCLI(t, "replay", "--verify", "--file", filepath.Join(brokenFixtures, "transition.ndjson"))
	is.Equal(code, 1)
	is.True(strings.Contains(out, "seq 31: transition pi-02/motd: Ready -> Failed"))
	is.True(strings.Contains(out, "1 violations (1 transition)"))

	for _, bad := range [][]string{
		{"replay", url, "--resource", "app"},
		{"replay", url, "--since", "yesterday"},
		{"replay", url, "--type", "Nope"},
		{"replay", url, "--device", "pi.01"},
		{"replay", url, "--follow", "--verify"},
		{"replay", url, "--from-seq", "9", "--to-seq", "3"},
	} {
		_, code = replayCLI(t, bad...)
		is.Equal(code, 2) // bad input is exit code 2
	}
}

func TestExportImportExportCommandsGiveIdenticalNDJSON(t *testing.T) {
	is := is.New(t)
	src := eventstest.Start(t, true)
	dst := eventstest.Start(t, true)
	good := filepath.Join(brokenFixtures, "good.ndjson")
	_, code := replayCLI(t, "import", good, "--nats="+src.Server.URL())
	is.Equal(code, 0)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "1.ndjson"), filepath.Join(dir, "2.ndjson")
	_, code = replayCLI(t, "export", "--nats="+src.Server.URL(), "--out", first)
	is.Equal(code, 0)
	_, code = replayCLI(t, "import", first, "--nats="+dst.Server.URL())
	is.Equal(code, 0)
	_, code = replayCLI(t, "export", "--nats="+dst.Server.URL(), "--out", second)
	is.Equal(code, 0)
	a, _ := os.ReadFile(first)
	b, _ := os.ReadFile(second)
	want, _ := os.ReadFile(good)
	is.Equal(string(a), string(b))
	is.Equal(string(a), string(want))

	// a broken line is refused naming it, and nothing is written
	empty := eventstest.Start(t, true)
	_, code = replayCLI(t, "import", filepath.Join(brokenFixtures, "undecodable.ndjson"), "--nats="+empty.Server.URL())
	is.Equal(code, 2)
	n, err := empty.Store.LastSeq(context.Background())
	is.NoErr(err)
	is.Equal(n, uint64(0))
}

func TestInspectFromIndexEqualsFoldAndDiffs(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	url := "--nats=" + env.Server.URL()
	_, code := replayCLI(t, "import", filepath.Join(brokenFixtures, "good.ndjson"), url)
	is.Equal(code, 0)

	// no time-travel service yet: the command folds the log
	folded, code := replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:12Z", url)
	is.Equal(code, 0)
	is.True(strings.Contains(folded, "full fold of 12 events"))
	is.True(strings.Contains(folded, "app       file  Reconciling"))

	x, err := timetravel.Open(t.TempDir(), timetravel.WithSnapshotEvery(4))
	is.NoErr(err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = x.Follow(ctx, env.Store) }()
	defer func() { cancel(); <-done; x.Close() }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	is.NoErr(x.WaitFor(wctx, 30))
	svc, err := x.Serve(env.Conn, env.Store)
	is.NoErr(err)
	defer svc.Stop()

	for _, at := range []string{"2026-05-01T12:00:09Z", "2026-05-01T12:00:12Z", "2026-05-01T12:00:25Z", "2026-05-01T13:00:00Z"} {
		fast, code := replayCLI(t, "inspect", "pi-01", "--at", at, "-o", "json", url)
		is.Equal(code, 0)
		slow, code := replayCLI(t, "inspect", "pi-01", "--at", at, "-o", "json", "--fold", url)
		is.Equal(code, 0)
		is.Equal(fast, slow) // the index and the fold agree
		var d projections.Device
		is.NoErr(json.Unmarshal([]byte(fast), &d))
		is.Equal(d.Device, "pi-01")
	}
	out, code := replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:12Z", url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "time-travel index"))

	out, code = replayCLI(t, "inspect", "pi-01", "--seq", "5", "-o", "json", url)
	is.Equal(code, 0)
	var d projections.Device
	is.NoErr(json.Unmarshal([]byte(out), &d))
	is.Equal(d.Generation, int64(1))

	out, code = replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:09Z", "--diff", "2026-05-01T12:00:30Z", "-o", "json", url)
	is.Equal(code, 0)
	var diff struct {
		Changes []timetravel.Change `json:"changes"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &diff))
	is.True(bytes.Contains([]byte(out), []byte(`"field": "resources.banner"`)))
	is.True(len(diff.Changes) >= 5)

	_, code = replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T11:00:00Z", url) // before its first event
	is.Equal(code, 1)
	_, code = replayCLI(t, "inspect", "pi-01", "--at", "noon", url)
	is.Equal(code, 2)
	_, code = replayCLI(t, "inspect", "pi-01", "--at", "1h", "--seq", "3", url)
	is.Equal(code, 2)
}

func TestReplayFollowPrintsNewEvents(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	data, err := os.ReadFile(filepath.Join(brokenFixtures, "good.ndjson"))
	is.NoErr(err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	first := strings.Join(lines[:10], "\n") + "\n"
	rest := strings.Join(lines[10:], "\n") + "\n"
	in := filepath.Join(t.TempDir(), "first.ndjson")
	is.NoErr(os.WriteFile(in, []byte(first), 0o644))
	_, code := replayCLI(t, "import", in, "--nats="+env.Server.URL())
	is.Equal(code, 0)

	ctx, cancel := context.WithCancel(context.Background())
	out := captureStdout(t, func() {
		go func() {
			time.Sleep(300 * time.Millisecond)
			restFile := filepath.Join(t.TempDir(), "rest.ndjson")
			_ = os.WriteFile(restFile, []byte(rest), 0o644)
			var evs []events.Event
			for _, l := range strings.Split(strings.TrimSpace(rest), "\n") {
				e, err := events.Decode([]byte(l))
				if err == nil {
					evs = append(evs, e)
				}
			}
			_ = env.Store.AppendBatch(ctx, evs)
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if n, _ := env.Store.LastSeq(ctx); n == 30 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
		}()
		cmd := &ReplayCmd{Follow: true, Format: "ndjson", Device: "pi-01"}
		is.NoErr(cmd.Run(ctx, &Globals{NATS: env.Server.URL()}))
	})
	var seqs []uint64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var s events.Stored
		is.NoErr(json.Unmarshal([]byte(l), &s))
		is.Equal(s.Device, "pi-01")
		seqs = append(seqs, s.Seq)
	}
	is.Equal(len(seqs), 24) // every pi-01 event, the ones stored before and after it started
	for i := 1; i < len(seqs); i++ {
		is.True(seqs[i] > seqs[i-1]) // in log order, none twice
	}
}

// fleet server runs the time-travel index as one of its parts: it answers
// inspect over NATS and the dashboard's GET /api/devices/{id}/at over HTTP,
// and resumes from its checkpoint after a restart.
func TestServerServesTimeTravel(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	url := "--nats=" + rs.Env.NATSURL
	_, code := replayCLI(t, "import", filepath.Join(brokenFixtures, "good.ndjson"), url)
	is.Equal(code, 0)

	get := func(path string) (int, string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := http.Get("http://" + rs.Env.HTTPAddr + path)
			is.NoErr(err)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Header.Get("Fleet-Checkpoint") == "30" || resp.StatusCode == http.StatusBadRequest || time.Now().After(deadline) {
				return resp.StatusCode, string(b)
			}
			time.Sleep(20 * time.Millisecond) // the index is still taking the log in
		}
	}
	code, body := get("/api/devices/pi-01/at?t=2026-05-01T12:00:12Z")
	is.Equal(code, 200)
	folded, c := replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:12Z", "-o", "json", "--fold", url)
	is.Equal(c, 0)
	var a, b projections.Device
	is.NoErr(json.Unmarshal([]byte(body), &a))
	is.NoErr(json.Unmarshal([]byte(folded), &b))
	is.Equal(a, b) // the HTTP answer is the fold's

	code, _ = get("/api/devices/pi-01/at?seq=5")
	is.Equal(code, 200)
	code, _ = get("/api/devices/pi-01/at?t=yesterday")
	is.Equal(code, 400)

	out, c := replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:12Z", url)
	is.Equal(c, 0)
	is.True(strings.Contains(out, "time-travel index at seq 30"))

	// a restart resumes from the checkpoint: the answer is unchanged
	rs.Stop()
	rs, err = cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	url = "--nats=" + rs.Env.NATSURL
	again, c := replayCLI(t, "inspect", "pi-01", "--at", "2026-05-01T12:00:12Z", "-o", "json", url)
	is.Equal(c, 0)
	is.Equal(again, folded)
}
