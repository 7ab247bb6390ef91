package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestDiskFullServerStopsWithoutPanicAndSaysWhatItCouldNotWrite runs
// `fleet server` with its whole data directory on a 64 MiB tmpfs, applies a
// manifest (the read models hold it in memory, not yet flushed), fills the
// disk and stops the server with SIGTERM: it must not panic (Pebble's WAL
// rotation did, on close), must say what it could not write and exit
// non-zero; started again with space freed, its read models take the
// manifest in again from the log.
func TestDiskFullServerStopsWithoutPanicAndSaysWhatItCouldNotWrite(t *testing.T) {
	is := is.New(t)
	data := filepath.Join(t.TempDir(), "data")
	mountTmpfs(t, data, "64m")
	t.Setenv("FLEET_ACTOR", "ops")
	args := []string{"server", "--data", data, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "-o", "json"}
	cmd, out, stderr := fleetChild(t, nil, args...)
	info := serverInfo(t, out, stderr)
	url := "--nats=" + fmt.Sprint(info["nats"])
	manifest := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	_, code := replayCLI(t, "apply", "-f", manifest, "--device", "pi-01", url)
	is.Equal(code, 0)
	eventstest.WaitFor(t, 15*time.Second, "the read models to fold the manifest", func() bool {
		o, code := replayCLI(t, "get", "devices", "-o", "json", url)
		return code == 0 && strings.Contains(o, "pi-01")
	})
	filler := fillDisk(t, data, 0)
	is.NoErr(cmd.Process.Signal(syscall.SIGTERM))
	err := cmd.Wait()
	t.Logf("fleet server: %v; stderr:\n%s", err, stderr)
	is.True(err != nil) // non-zero
	is.True(!strings.Contains(stderr.String(), "panic"))
	is.True(!strings.Contains(stderr.String(), "goroutine "))
	is.True(strings.Contains(stderr.String(), "could not write what it took in since its last flush"))
	is.True(strings.Contains(stderr.String(), "takes those events in again from the log at the next start"))
	is.True(strings.Contains(stderr.String(), "fleet: stopped, but not cleanly: 2 part(s) could not write everything while stopping"))

	is.NoErr(os.Remove(filler))
	cmd, out, stderr = fleetChild(t, nil, args...)
	info = serverInfo(t, out, stderr)
	url = "--nats=" + fmt.Sprint(info["nats"])
	eventstest.WaitFor(t, 15*time.Second, "the manifest folded again after the restart", func() bool {
		o, code := replayCLI(t, "get", "devices", "-o", "json", url)
		return code == 0 && strings.Contains(o, "pi-01")
	})
	is.NoErr(cmd.Process.Signal(syscall.SIGTERM))
	is.NoErr(cmd.Wait())
}
