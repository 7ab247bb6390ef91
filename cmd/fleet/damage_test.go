package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// healthz returns /healthz's status code and body.
func healthz(t testing.TB, addr string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("/healthz: %v: %s", err, b)
	}
	return resp.StatusCode, body
}

// TestDamagedBlockIsNoticedAndNoGenerationIsReused flips 64 bytes in the
// middle of the stopped server's FLEET/msgs/1.blk (from the first record
// that starts past the middle), the way a failing disk
// would. On restart JetStream drops everything from the damage on: the
// stream's last sequence is now below the projection checkpoint and the
// time-travel index's, and pi-01's last two manifests are gone. fleet must
// notice: the server's own log says so (it is routed to fleet's logger);
// /healthz fails naming the problem and what to do; the projection service
// applies nothing on the shortened log; fleet apply takes the generation
// after the highest ever seen, not a lost one. After 'fleet project
// --rebuild --remote' the read models take the log as it is and apply new
// events again; removing the index lets it be rebuilt, and /healthz is ok.
func TestDamagedBlockIsNoticedAndNoGenerationIsReused(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	old := projections.LogCheckInterval
	projections.LogCheckInterval = 100 * time.Millisecond
	defer func() { projections.LogCheckInterval = old }()
	logs := &lockedBuffer{}
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	defer slog.SetDefault(prev)
	t.Setenv("FLEET_ACTOR", "ops")

	dir := t.TempDir()
	cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	url := "--nats=" + rs.Env.NATSURL
	mdir := t.TempDir()
	manifests := 0
	// apply writes a manifest new each time (fleet apply makes re-running the
	// same one a no-op), or the first one again with same
	apply := func(same ...bool) (gen int64, stderr string) {
		t.Helper()
		if len(same) == 0 {
			manifests++
		}
		manifest := filepath.Join(mdir, fmt.Sprintf("m%d.yaml", manifests))
		is.NoErr(os.WriteFile(manifest, fmt.Appendf(nil, "resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"v%d\\n\"}\n", manifests), 0o644))
		var out string
		var code int
		errOut := captureStderr(t, func() { out, code = replayCLI(t, "apply", "-f", manifest, "--device", "pi-01", "-o", "json", url) })
		is.Equal(code, 0)
		var res struct{ Generation int64 }
		is.NoErr(json.Unmarshal([]byte(out), &res))
		return res.Generation, errOut
	}
	g, _ := apply()
	is.Equal(g, int64(1))
	evs := fixtures.GenerateLog(4, fixtures.Options{Devices: 3, Events: 2000})
	is.NoErr(rs.Env.Store.AppendBatch(ctx, evs))
	apply()
	g, _ = apply()
	is.Equal(g, int64(3))
	last, err := rs.Env.Store.LastSeq(ctx)
	is.NoErr(err)
	waitHealthy := func() {
		eventstest.WaitFor(t, 10*time.Second, "projections and index at the log's end", func() bool {
			code, body := healthz(t, rs.Env.HTTPAddr)
			return code == 200 && body["checkpoint"] == float64(last)
		})
	}
	waitHealthy()
	rs.Stop()

	// 64 bytes flipped in the middle of the block
	blks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "*", "streams", events.Stream, "msgs", "1.blk"))
	is.Equal(len(blks), 1)
	b, err := os.ReadFile(blks[0])
	is.NoErr(err)
	at := recordNear(b, len(b)/2)
	for i := at; i < at+64; i++ {
		b[i] ^= 0xff
	}
	is.NoErr(os.WriteFile(blks[0], b, 0o644))

	rs, err = cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	url = "--nats=" + rs.Env.NATSURL
	now, err := rs.Env.Store.LastSeq(ctx)
	is.NoErr(err)
	t.Logf("log: %d events before the damage, %d after", last, now)
	is.True(now < last/2+100) // JetStream dropped the damaged part and what follows
	is.True(strings.Contains(logs.String(), "corrupt"))
	is.True(strings.Contains(logs.String(), "nats-server"))

	var body map[string]any
	failed := map[string]bool{}
	eventstest.WaitFor(t, 5*time.Second, "/healthz to fail for the read models and the index", func() bool {
		var code int
		code, body = healthz(t, rs.Env.HTTPAddr)
		for _, c := range body["checks"].([]any) {
			c := c.(map[string]any)
			failed[c["name"].(string)] = c["ok"] == false
		}
		return code == http.StatusServiceUnavailable && failed["projections"] && failed["time travel"]
	})
	is.True(strings.Contains(body["reason"].(string), "went backwards"))
	is.True(strings.Contains(body["action"].(string), "--rebuild"))
	is.True(strings.Contains(body["action"].(string), "backup"))

	// no generation reused: the log's last manifest of pi-01 is generation 1 now
	lm, err := rs.Env.Store.LastManifest(ctx, "pi-01")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(1))
	manifests = 1 // the manifest of generation 1, the last one the log still has
	g, warn := apply(true)
	is.Equal(g, int64(4)) // a new generation: the device runs generation 3, not 1
	manifests = 3
	is.True(strings.Contains(warn, "lost events"))
	// and the projection service folds nothing onto the shortened log, not
	// even once new events pass its old checkpoint
	more := fixtures.GenerateLog(5, fixtures.Options{Devices: 2, Events: 1500})
	is.NoErr(rs.Env.Store.AppendBatch(ctx, more))
	grown, err := rs.Env.Store.LastSeq(ctx)
	is.NoErr(err)
	is.True(grown > last)
	time.Sleep(5 * projections.LogCheckInterval) // give a wrongly running consumer the chance to apply them
	_, body = healthz(t, rs.Env.HTTPAddr)
	is.Equal(body["checkpoint"], float64(last)) // nothing applied
	is.Equal(body["ok"], false)                 // and still refusing: the log went backwards once
	d, ok := projectionDevice(t, rs, "pi-01")
	is.True(ok)
	is.Equal(d.Generation, int64(3)) // what it had, not generation 4 at a reused sequence

	// the operator accepts the log as it is
	_, code := replayCLI(t, "project", "--rebuild", "--remote", url)
	is.Equal(code, 0)
	eventstest.WaitFor(t, 5*time.Second, "pi-01 at generation 4 in the rebuilt read models", func() bool {
		d, _ := projectionDevice(t, rs, "pi-01")
		return d.Generation == 4
	})
	g, _ = apply()
	is.Equal(g, int64(5))
	eventstest.WaitFor(t, 5*time.Second, "new events applied again", func() bool {
		d, _ := projectionDevice(t, rs, "pi-01")
		return d.Generation == 5
	})
	_, body = healthz(t, rs.Env.HTTPAddr)
	for _, c := range body["checks"].([]any) {
		c := c.(map[string]any)
		if c["name"] == "projections" {
			is.Equal(c["ok"], true)
		}
		if c["name"] == "time travel" {
			is.Equal(c["ok"], false) // still refuses until its store is removed
			is.True(strings.Contains(c["action"].(string), "timetravel"))
		}
	}
	rs.Stop()
	is.NoErr(os.RemoveAll(filepath.Join(dir, "timetravel")))
	rs, err = cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	last, err = rs.Env.Store.LastSeq(ctx)
	is.NoErr(err)
	waitHealthy()
}

// recordNear returns the offset of the first message record of a
// JetStream block that starts at or after off (records: a 4-byte little
// endian length, its top bit marking headers, then sequence, time, subject,
// headers, body and checksum), so that the flipped bytes hit a record's
// header as well as its body.
func recordNear(b []byte, off int) int {
	at := 0
	for at+4 <= len(b) {
		rl := int(binary.LittleEndian.Uint32(b[at:]) &^ (1 << 31))
		if at >= off || rl <= 0 {
			return at
		}
		at += rl
	}
	return off
}

// projectionDevice reads one device from the running server's read models.
func projectionDevice(t *testing.T, rs *RunningServer, id string) (projections.Device, bool) {
	t.Helper()
	resp, err := http.Get("http://" + rs.Env.HTTPAddr + "/api/devices/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return projections.Device{}, false
	}
	var d projections.Device
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d, true
}

func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	old := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	defer func() { os.Stderr = old }()
	fn()
	w.Close()
	return <-done
}

// TestMessageDamagedInsideItsBodyIsReportedAsAStall flips 64 bytes at the
// exact middle of the block, inside one record's body: the server says
// nothing and still counts every message, but cannot deliver that one, so
// consumers stop there. The projection service must not wait silently:
// /healthz fails naming the sequence it is stuck before.
func TestMessageDamagedInsideItsBodyIsReportedAsAStall(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	oldI, oldS := projections.LogCheckInterval, projections.StallAfter
	projections.LogCheckInterval, projections.StallAfter = 100*time.Millisecond, time.Second
	defer func() { projections.LogCheckInterval, projections.StallAfter = oldI, oldS }()
	dir := t.TempDir()
	cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	is.NoErr(rs.Env.Store.AppendBatch(ctx, fixtures.GenerateLog(4, fixtures.Options{Devices: 3, Events: 2000})))
	rs.Stop()
	// the read models start again from nothing, so they must read past the damage
	is.NoErr(os.RemoveAll(filepath.Join(dir, "projections")))
	flipBlockMiddle(t, dir)
	rs, err = cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	last, err := rs.Env.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(last, uint64(2000)) // the server still counts every message
	var body map[string]any
	eventstest.WaitFor(t, 15*time.Second, "/healthz to report the stall", func() bool {
		var code int
		code, body = healthz(t, rs.Env.HTTPAddr)
		return code == http.StatusServiceUnavailable && strings.Contains(fmt.Sprint(body["reason"]), "have not moved from sequence")
	})
	t.Log(body["reason"])
	is.True(strings.Contains(fmt.Sprint(body["reason"]), "may be damaged"))
}

// flipBlockMiddle flips 64 bytes at the exact middle of the FLEET stream's
// one message block under a stopped server's data directory dir: inside
// one record's body, its header intact, so the server says nothing.
func flipBlockMiddle(t *testing.T, dir string) {
	t.Helper()
	is := is.New(t)
	blks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "*", "streams", events.Stream, "msgs", "1.blk"))
	is.Equal(len(blks), 1)
	b, err := os.ReadFile(blks[0])
	is.NoErr(err)
	for i := len(b) / 2; i < len(b)/2+64; i++ {
		b[i] ^= 0xff
	}
	is.NoErr(os.WriteFile(blks[0], b, 0o644))
}
