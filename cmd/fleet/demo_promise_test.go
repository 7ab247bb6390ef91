package main

import (
	"bufio"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

var demoPromise = flag.Bool("demo-promise", false, "measure the README's promise: fleet demo on a fresh clone, time from the end of the build to the dashboard address and to the first converged device")

// TestDemoPromiseFromFreshClone measures what a new user sees: it clones
// the repository (its committed HEAD), builds fleet, runs `fleet demo` with
// its defaults (12 devices), and logs the time from the end of the build to
// the dashboard address (promised within 5s) and to the first converged
// device (promised within 30s). It reports figures; it asserts no timing.
//
//	go test ./cmd/fleet -run TestDemoPromiseFromFreshClone -demo-promise -v
func TestDemoPromiseFromFreshClone(t *testing.T) {
	if !*demoPromise {
		t.Skip("a measurement: run with -demo-promise")
	}
	is := is.New(t)
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	is.NoErr(err)
	clone := filepath.Join(t.TempDir(), "fleet")
	is.NoErr(exec.Command("git", "clone", "-q", strings.TrimSpace(string(top)), clone).Run())

	bin := filepath.Join(t.TempDir(), "fleet")
	start := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./cmd/fleet")
	build.Dir, build.Stderr = clone, os.Stderr
	is.NoErr(build.Run())
	built := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	cmd := exec.CommandContext(ctx, bin, "demo", "--for", "1s", "--http", "127.0.0.1:0")
	cmd.Dir, cmd.Env = clone, append(os.Environ(), "TMPDIR="+tmp)
	out, err := cmd.StdoutPipe()
	is.NoErr(err)
	is.NoErr(cmd.Start())
	var url, first, all time.Duration
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line, at := sc.Text(), time.Since(built)
		switch {
		case url == 0 && strings.HasPrefix(line, "fleet demo: dashboard http://"):
			url = at
		case first == 0 && strings.Contains(line, "first converged device"):
			first = at
		case all == 0 && strings.Contains(line, "12/12 devices settled"):
			all = at
		}
	}
	is.NoErr(cmd.Wait())
	t.Logf("fresh clone: build %s; after the build: dashboard address %s (promise 5s), first converged device %s (promise 30s), all 12 settled %s",
		built.Sub(start).Round(time.Millisecond), url.Round(time.Millisecond), first.Round(time.Millisecond), all.Round(time.Millisecond))
	is.True(url > 0 && first > 0) // both lines were printed
}
