package agent_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fsm"
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// fleetAgentBinary builds cmd/fleet-agent once per test run.
func fleetAgentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fleet-agent-test")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "fleet-agent")
		// Built as it ships (see README): static, stripped.
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", agentBin, "../cmd/fleet-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

func manyFiles(n int, v string) []events.Resource {
	rs := make([]events.Resource, n)
	for i := range rs {
		rs[i] = fileRes(fmt.Sprintf("f%03d", i), fmt.Sprintf("/data/d%d/f%03d.conf", i%10, i), fmt.Sprintf("file %d %s\n", i, v))
	}
	return rs
}

// lastStates folds the log into each resource's last state.
func lastStates(log []events.Stored) map[string]fsm.State {
	st := map[string]fsm.State{}
	for _, s := range ofType(log, events.TypeStatusChanged, "") {
		p, _ := s.Payload()
		to := fsm.State(p.(*events.StatusChanged).To)
		if to == fsm.Removed {
			delete(st, s.Resource)
		} else {
			st[s.Resource] = to
		}
	}
	return st
}

func TestKill9AtRandomMomentsLosesAndDuplicatesNothing(t *testing.T) {
	is := is.New(t)
	bin := fleetAgentBinary(t)
	env := eventstest.Start(t, true)
	root, state := t.TempDir(), t.TempDir()
	const device = "crash-01"
	agentCmd := func() (*exec.Cmd, *bytes.Buffer) {
		var stderr bytes.Buffer
		c := exec.Command(bin, "--nats", env.Server.URL(), "--device", device, "--root", root, "--state", state,
			"--drift-interval", "1h", "--concurrency", "16")
		c.Stderr = &stderr
		is.NoErr(c.Start())
		return c, &stderr
	}
	var want []events.Resource
	for i := range 20 {
		// Each run starts with a new generation to converge: every file
		// changes; from the 11th on, 50 are removed.
		want = manyFiles(500, fmt.Sprintf("v%d", i))
		if i >= 10 {
			want = want[:450]
		}
		apply(t, env, device, want...)
		c, _ := agentCmd()
		time.Sleep(time.Duration(30+rand.IntN(400)) * time.Millisecond)
		is.NoErr(c.Process.Signal(syscall.SIGKILL))
		_ = c.Wait()
	}
	c, stderr := agentCmd()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := lastStates(deviceLog(t, env, device))
		ready := 0
		for _, s := range st {
			if s == fsm.Ready {
				ready++
			}
		}
		if ready == len(want) && len(st) == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the last restart: %d of %d Ready (%d managed)\n%s", ready, len(want), len(st), stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	is.NoErr(c.Process.Signal(syscall.SIGTERM))
	is.NoErr(c.Wait()) // SIGTERM: exit 0
	log := deviceLog(t, env, device)
	checkLog(t, log) // no duplicate id, fsm-legal transitions, ids and times in order
	for _, r := range want {
		is.Equal(readFile(t, filepath.Join(root, r.File.Path)), r.File.Content)
	}
	for _, r := range manyFiles(500, "")[450:] {
		_, err := os.Stat(filepath.Join(root, r.File.Path))
		is.True(os.IsNotExist(err)) // removed resources are deleted
	}
	resumed := 0
	for _, s := range ofType(log, events.TypeReconcileAttempted, "") {
		p, _ := s.Payload()
		if p.(*events.ReconcileAttempted).Trigger == "resume" {
			resumed++
		}
	}
	t.Logf("%d events on the log after 20 kills; %d attempts resumed after a kill", len(log), resumed)
}
