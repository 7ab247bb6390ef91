package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/cmd/fleet/internal/sim"
)

// TestSimServerHelper is `fleet server` for the simulation test, run as a
// child process of the test binary (the simulator starts and may SIGKILL
// it). It does nothing in a normal run.
func TestSimServerHelper(t *testing.T) {
	args := os.Getenv("FLEET_SIM_SERVER_ARGS")
	if args == "" {
		t.Skip("child process of TestSimulatedFleetConvergesAndVerifies")
	}
	os.Setenv("FLEET_NATS", "")
	if f := os.Getenv("FLEET_SIM_SERVER_NICE_FILE"); f != "" {
		// TestSimDevicesRunBelowTheServer: say at which nice this start runs
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, 0)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(f, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "%d\n", 20-prio) // the raw syscall answers 20 - nice
		w.Close()
	}
	os.Exit(run(strings.Split(args, "\x1f")))
}

// TestSimNiceHelper is the simulator of TestSimDevicesRunBelowTheServer, in
// a process of its own (a nice value raised cannot be lowered again, so
// not in the test binary's). It does nothing in a normal run.
func TestSimNiceHelper(t *testing.T) {
	if os.Getenv("FLEET_SIM_NICE_HELPER") == "" {
		t.Skip("child process of TestSimDevicesRunBelowTheServer")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := sim.Run(ctx, sim.Config{Devices: 3, Resources: 1, Scenario: sim.Reconnect, For: time.Minute, Nice: 5,
		Outage: 500 * time.Millisecond, Dir: t.TempDir(), Server: simServer, Settle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	nices := map[int]int{}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread has ended
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		n, _ := strconv.Atoi(f[16]) // field 19 of stat: nice
		nices[n]++
	}
	fmt.Printf("report nice %d; threads by nice: %v\n", rep.Nice, nices)
}

// TestSimDevicesRunBelowTheServer: with Config.Nice the simulator's threads
// (the agents) run that many nice levels below the server, and the server
// is started, and restarted after the reconnect scenario's SIGKILL, at the
// simulator's original priority.
func TestSimDevicesRunBelowTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a simulation in a child process")
	}
	is := is.New(t)
	niceFile := filepath.Join(t.TempDir(), "server-nice")
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimNiceHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "FLEET_SIM_NICE_HELPER=1", "FLEET_SIM_SERVER_NICE_FILE="+niceFile)
	out, err := cmd.CombinedOutput()
	is.NoErr(err)
	reportNice, byNice := -1, ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "report nice ") {
			_, err := fmt.Sscanf(l, "report nice %d;", &reportNice)
			is.NoErr(err)
			byNice = l[strings.Index(l, "map["):]
		}
	}
	t.Log(byNice)
	is.Equal(reportNice, 5) // the report says it
	// the agents' threads at 5; one, which starts the server, at 0
	is.True(strings.HasPrefix(byNice, "map[0:1 5:"))
	b, err := os.ReadFile(niceFile)
	is.NoErr(err)
	is.Equal(string(b), "0\n0\n") // the server at 0, started and restarted
}

func simServer(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimServerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FLEET_SIM_SERVER_ARGS="+strings.Join(args, "\x1f"))
	return cmd
}

// TestSimulatedFleetConvergesAndVerifies: 200 real agents (50 with -short),
// each with its own connection, against a `fleet server` child process: the
// first generation and a rollout of a second reach every device Ready in
// the read model, the raw floor runs on the same server, the whole log
// verifies, and every device's events in the log are exactly the events its
// agent committed (nothing lost, nothing duplicated), as are the manifests.
func TestSimulatedFleetConvergesAndVerifies(t *testing.T) {
	is := is.New(t)
	n := 200
	if testing.Short() {
		n = 50
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	rep, err := sim.Run(ctx, sim.Config{Devices: n, Resources: 3, Scenario: sim.Rollout, For: 90 * time.Second,
		Dir: t.TempDir(), Server: simServer, Settle: 500 * time.Millisecond, Log: &log})
	t.Log(log.String())
	is.NoErr(err)
	is.Equal(rep.Devices, n)
	is.Equal(rep.Initial.Ready, n)
	is.Equal(rep.Rollout.Ready, n)
	is.Equal(rep.Rollout.Generation, int64(2))
	is.True(rep.Verify.OK)
	is.Equal(rep.Verify.Devices, n)
	is.Equal(rep.Verify.Events, int(rep.EventsStored)) // verified from sequence 1 to the end
	is.True(rep.Counts.Equal)
	is.Equal(rep.Counts.Manifests, int64(2*n))
	is.Equal(rep.Counts.LogManifests, int64(2*n))
	is.Equal(rep.Counts.AgentEvents, rep.Counts.LogAgentEvents)
	is.Equal(rep.Counts.DevicesMismatch, 0)
	is.True(rep.Counts.AgentEvents > int64(n*3*3)) // per file and generation: at least Pending, Reconciling, Ready
	is.True(rep.Floor != nil && rep.Floor.Events > 0)
	is.True(rep.Server.Measure && rep.Server.RSS > 0) // the child's /proc was read
	is.True(rep.Wire.BytesPerDevicePerDay > 0)
}

// TestSimRefusesBadInput: bad flags are refused naming the flag and the rule.
func TestSimRefusesBadInput(t *testing.T) {
	is := is.New(t)
	for _, c := range []struct {
		cfg  sim.Config
		want string
	}{
		{sim.Config{Devices: 0, Resources: 1, Scenario: sim.Idle, For: time.Second, Server: simServer}, "--devices 0: must be at least 1"},
		{sim.Config{Devices: 1, Resources: 0, Scenario: sim.Idle, For: time.Second, Server: simServer}, "--resources 0: must be from 1"},
		{sim.Config{Devices: 1, Resources: 1, Scenario: "storm", For: time.Second, Server: simServer}, `--scenario "storm": must be one of`},
		{sim.Config{Devices: 1, Resources: 1, Scenario: sim.Idle, For: 0, Server: simServer}, "--for 0s: must be positive"},
		{sim.Config{Devices: 1, Resources: 1, Scenario: sim.Idle, For: time.Second, Server: simServer, Nice: 20}, "--nice 20: must be from 0 to 19"},
		{sim.Config{Devices: 1, Resources: 1, Scenario: sim.Idle, For: time.Second, Server: simServer, Nice: -1}, "--nice -1: must be from 0 to 19"},
		{sim.Config{Devices: 1, Resources: 1, Scenario: sim.Idle, For: time.Second, NATS: "nats://127.0.0.1:1", Auth: true}, "--auth configures the server"},
	} {
		_, err := sim.Run(context.Background(), c.cfg)
		is.True(err != nil)
		is.True(strings.Contains(err.Error(), c.want)) // names the flag and the rule
		is.Equal(exitCode(err), exitUsage)
	}
}

// TestSimulatedServerKilledUnderAgentsLosesNothing: the server is killed
// (SIGKILL) under 50 agents, a tenth of them correct drift while it is
// down, and it is restarted on the same address and data: every agent
// reconnects, every outbox drains, the log verifies and holds exactly the
// events the agents committed (none lost, none twice).
func TestSimulatedServerKilledUnderAgentsLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a server under 50 agents")
	}
	// It was a soak for a while: in the full suite on CI one agent of the
	// 50 sometimes never took generation 1. The manifest hint (the core
	// message) arrives before the stream has stored the manifest; under
	// load that took more than the second the agent's re-reads lasted, and
	// it waited for the 10-minute poll. The watch now keeps reading for
	// 30 s (agent/manifest_chase.go).
	is := is.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var log strings.Builder
	rep, err := sim.Run(ctx, sim.Config{Devices: 50, Resources: 2, Scenario: sim.Reconnect, For: 90 * time.Second,
		Outage: 2 * time.Second, Dir: t.TempDir(), Server: simServer, Settle: 500 * time.Millisecond, Log: &log,
		// Drift is found by the interval check too, whether or not the
		// machine has file-notification instances left.
		AgentOptions: []agent.Option{agent.WithDriftInterval(200 * time.Millisecond)}})
	t.Log(log.String())
	is.NoErr(err)
	is.Equal(rep.Reconnect.Reconnected, 50)
	is.Equal(rep.Reconnect.Drained, 50)
	is.True(rep.Reconnect.PendingAtRestart > 0) // the outage left events in outboxes
	is.True(rep.Verify.OK)
	is.True(rep.Counts.Equal)
	is.Equal(rep.Counts.AgentEvents, rep.Counts.LogAgentEvents)
}
