package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestFleetCLIChild is not a test: it runs the fleet CLI with the arguments
// in FLEET_CLI_ARGS (JSON) as a child process of the tests that need a real
// process (environment, signals) without building the binary.
func TestFleetCLIChild(t *testing.T) {
	raw := os.Getenv("FLEET_CLI_ARGS")
	if raw == "" {
		t.Skip("child process of the CLI tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	os.Exit(run(args))
}

// fleetChild starts the CLI as a child process with env added to this
// process's environment.
func fleetChild(t *testing.T, env []string, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	b, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^TestFleetCLIChild$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), "FLEET_CLI_ARGS="+string(b)), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewReader(out), &stderr
}

// serverInfo reads the JSON line `fleet server -o json` prints once it is up.
func serverInfo(t *testing.T, out *bufio.Reader, stderr *bytes.Buffer) map[string]any {
	t.Helper()
	lines := make(chan string, 1)
	go func() { l, _ := out.ReadString('\n'); lines <- l }()
	select {
	case l := <-lines:
		var info map[string]any
		if err := json.Unmarshal([]byte(l), &info); err != nil {
			t.Fatalf("fleet server printed %q (stderr %s): %v", l, stderr, err)
		}
		return info
	case <-time.After(30 * time.Second):
		t.Fatalf("fleet server not up after 30s; stderr: %s", stderr)
	}
	return nil
}

// TestServerListenAndDataMeanTheEmbeddedServer is issue 17's first item:
// FLEET_NATS in the environment (left from using client commands against
// production) must not turn `fleet server --listen X --data D` into a client
// of that server, nor make --auth fail; an explicit --nats with --listen is
// a conflict, exit 2, naming both flags.
func TestServerListenAndDataMeanTheEmbeddedServer(t *testing.T) {
	prod := eventstest.Start(t, true) // the server FLEET_NATS points at
	prodURL := prod.Server.URL()
	envNATS := []string{"FLEET_NATS=" + prodURL}

	for _, withAuth := range []bool{false, true} {
		name := "plain"
		if withAuth {
			name = "auth"
		}
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			data := t.TempDir()
			args := []string{"server", "--listen", "127.0.0.1:0", "--data", data, "--http", "", "--relaxed-sync", "-o", "json"}
			if withAuth {
				args = append(args, "--auth")
			}
			cmd, out, stderr := fleetChild(t, envNATS, args...)
			info := serverInfo(t, out, stderr)
			is.Equal(info["embedded"], true)
			is.True(info["nats"] != prodURL) // its own server, not the one in the environment
			is.Equal(info["auth"], withAuth)
			_, err := os.Stat(filepath.Join(data, "jetstream"))
			is.NoErr(err) // the store is in --data
			is.True(strings.Contains(stderr.String(), "FLEET_NATS="+prodURL+" in the environment is ignored"))
			is.NoErr(cmd.Process.Signal(syscall.SIGTERM))
			is.NoErr(cmd.Wait())
		})
	}
	t.Run("production untouched", func(t *testing.T) {
		is := is.New(t)
		names := prod.JS.StreamNames(t.Context())
		n := 0
		for range names.Name() {
			n++
		}
		is.Equal(n, 1) // only its FLEET stream: no heartbeat bucket was created there
	})
	t.Run("--nats with --listen is a conflict", func(t *testing.T) {
		is := is.New(t)
		data := filepath.Join(t.TempDir(), "data")
		cmd, _, stderr := fleetChild(t, nil, "server", "--nats", prodURL, "--listen", "127.0.0.1:0", "--data", data, "--http", "")
		stop := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() }) // it must refuse, not serve
		defer stop.Stop()
		err := cmd.Wait()
		var ee *exec.ExitError
		is.True(err != nil)
		is.True(errorsAs(err, &ee))
		is.Equal(ee.ExitCode(), 2)
		is.True(strings.Contains(stderr.String(), "--nats "+prodURL+" and --listen 127.0.0.1:0 conflict"))
		_, err = os.Stat(data)
		is.True(os.IsNotExist(err)) // nothing left behind
	})
	t.Run("an explicit --nats still uses the existing server", func(t *testing.T) {
		is := is.New(t)
		cmd, out, stderr := fleetChild(t, nil, "server", "--nats", prodURL, "--data", t.TempDir(), "--http", "", "-o", "json")
		info := serverInfo(t, out, stderr)
		is.Equal(info["embedded"], false)
		is.Equal(info["nats"], prodURL)
		is.NoErr(cmd.Process.Signal(syscall.SIGTERM))
		is.NoErr(cmd.Wait())
	})
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}
