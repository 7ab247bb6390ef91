package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// mountTmpfs mounts a tmpfs of size at dir for the test, or skips the test
// when it cannot (it needs root; CI runs as root).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for the full disk (CI runs as root)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs at %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// TestLogDiskFullFailsHealthAndRecoversWithoutRestart runs fleet server with
// its JetStream store on a 16 MiB tmpfs (the read models elsewhere) and fills
// that disk with real events. JetStream's file store fails the write and
// takes none after it: /healthz must fail naming the full disk and what to
// do, and fleet apply must fail with a clear error. When space returns,
// JetStream is started again inside the running server: /healthz is ok,
// fleet apply works, and every event acknowledged before is still there.
func TestLogDiskFullFailsHealthAndRecoversWithoutRestart(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	dir := t.TempDir()
	logDisk := filepath.Join(dir, "jetstream")
	mountTmpfs(t, logDisk, "16m")
	t.Setenv("FLEET_ACTOR", "ops")
	cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	url := "--nats=" + rs.Env.NATSURL
	manifest := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	_, code := replayCLI(t, "apply", "-f", manifest, "--device", "pi-01", url)
	is.Equal(code, 0)
	code, _ = healthz(t, rs.Env.HTTPAddr)
	is.Equal(code, 200)

	// most of the disk goes to something else; the log fills the rest
	filler := filepath.Join(logDisk, "filler")
	is.NoErr(os.WriteFile(filler, make([]byte, 9<<20), 0o644))
	evs := fixtures.GenerateLog(8, fixtures.Options{Devices: 5, Events: 40000})
	acked := 0
	for i := 0; i < len(evs); i += 500 {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := rs.Env.Store.AppendBatch(actx, evs[i:min(i+500, len(evs))])
		cancel()
		if err != nil {
			t.Logf("after %d events: %v", acked, err)
			break
		}
		acked = i + 500
	}
	is.True(acked < len(evs)) // the disk filled

	var body map[string]any
	eventstest.WaitFor(t, 10*time.Second, "/healthz to fail", func() bool {
		code, body = healthz(t, rs.Env.HTTPAddr)
		return code == http.StatusServiceUnavailable
	})
	reason := fmt.Sprint(body["reason"])
	is.True(strings.Contains(reason, "jetstream: "))
	is.True(strings.Contains(reason, "no space left on device") || strings.Contains(reason, "disabled"))
	is.True(strings.Contains(fmt.Sprint(body["action"]), "free space"))

	stderr := captureStderr(t, func() {
		_, code = replayCLI(t, "apply", "-f", manifest, "--device", "pi-02", url)
	})
	is.True(code != 0)
	is.True(strings.Contains(stderr, "unavailable"))

	// space returns: no restart
	is.NoErr(os.Remove(filler))
	eventstest.WaitFor(t, 15*time.Second, "/healthz ok again", func() bool {
		code, body = healthz(t, rs.Env.HTTPAddr)
		return code == 200
	})
	_, code = replayCLI(t, "apply", "-f", manifest, "--device", "pi-02", url)
	is.Equal(code, 0)
	lm, err := rs.Env.Store.LastManifest(ctx, "pi-02")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(1))
	// every acknowledged event is on the log, once
	ids := map[string]int{}
	for s, err := range rs.Env.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		ids[s.ID]++
	}
	for _, e := range evs[:acked] {
		is.Equal(ids[e.ID], 1)
	}
}
