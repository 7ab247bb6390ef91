package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"time"

	"github.com/fleet-dev/fleet/cmd/fleet/internal/sim"
)

func init() {
	register("sim", "Simulate N devices (real agents, simulated side effects) to measure what a fleet costs: idle, rollout, reconnect, drift.", "Control plane", &SimCmd{})
}

// SimCmd is `fleet sim`.
type SimCmd struct {
	Devices   int           `default:"100" help:"How many devices to simulate (1 to 99999), named sim-00000, sim-00001, ..."`
	Resources int           `default:"5" placeholder:"K" help:"Files per device in each generation."`
	Scenario  string        `default:"idle" enum:"idle,rollout,reconnect,drift" help:"What to measure: idle, rollout, reconnect or drift."`
	For       time.Duration `name:"for" default:"1m" placeholder:"DURATION" help:"Length of the idle and drift phases; the longest a rollout or reconnect may take."`
	Outage    time.Duration `default:"5s" placeholder:"DURATION" help:"How long the reconnect scenario keeps the server down."`
	Auth      bool          `help:"Run the server with --auth and give every device its own credentials."`
	Dir       string        `placeholder:"DIR" help:"Where device roots, agent stores and server data go (default: a new directory in /dev/shm, removed at the end)."`
	Keep      bool          `help:"Keep the directory at the end."`
	DebugDir  string        `placeholder:"DIR" help:"When a phase stalls (no device more Ready or drained for 30 s), write the simulator's goroutines and the stuck devices' state to DIR/stall-*.txt."`
	Nice      *int          `placeholder:"N" help:"Run the simulated devices N nice levels below the server (0 to 19; default 10 on Linux, 0 elsewhere): on one machine the server then has first claim on the cores, as on a machine of its own in a fleet. The devices' work still shares the cores and is counted. 0: the same priority."`
	Apply     string        `default:"batch" enum:"batch,each" help:"How the simulator appends each generation: batch (events.ApplyMany: 1,000 manifests an atomic batch, a compare-and-set each) or each (events.Apply a device, 64 at a time, as a script of fleet apply calls)."`
	Output
}

// Help is shown by `fleet sim --help`.
func (c *SimCmd) Help() string {
	return `Runs N devices in this process, each the real agent (manifest watch, diff,
per-resource state machines, backoff, outbox, heartbeat, lifecycle) with its
own NATS connection; only side effects are simulated: every device's files
live on a memory-backed directory (/dev/shm), its Pebble store on a file
system of its own in memory (no file descriptors: one a device, its
connection). Without
--nats it runs 'fleet server' (embedded JetStream with fsync before ack, the
projection service, the HTTP API) as a child process, so the server's CPU
and memory are measured apart from the agents'.

Every scenario first rolls out generation 1 (K files) to every device and
waits until the read model shows the fleet Ready, then:
  idle       measures the fleet doing nothing for --for: CPU, memory, bytes
             on the wire per device per day, durable writes a second;
  rollout    appends generation 2 to every device (compare-and-set each,
             1,000 pipelined at a time; --apply each: one device at a time,
             as 'fleet apply') and times desired -> Ready from the read model,
             then the raw floor: bare clients publishing the same events in
             the same batch shapes to the same server;
  reconnect  kills the server (SIGKILL) under all agents, tampers with a
             file on every one of them, restarts it, and times reconnects and
             outbox drains;
  drift      tampers with a file on 1% of the devices every minute.
It ends with 'fleet replay --verify' of the whole log and the agents' own
event counts compared with the log's, prints the report (-o json: as JSON),
and exits 1 if the fleet did not converge or the log does not verify.

Examples:
  fleet sim --devices 200 --for 30s
  fleet sim --devices 1000 --scenario rollout --resources 5 -o json
  fleet sim --devices 500 --scenario reconnect --outage 10s
  fleet sim --devices 10000 --scenario rollout --apply each --for 10m
  fleet sim --devices 100 --scenario drift --for 3m --auth
  fleet sim --devices 1000 --scenario rollout --nice 0   # devices at the server's priority
  fleet sim --devices 50 --nats nats://127.0.0.1:4222    # against a running fleet server`
}

// Run runs the simulation and prints its report.
func (c *SimCmd) Run(ctx context.Context, g *Globals) error {
	if c.Outage <= 0 {
		return usagef("--outage %s: must be positive", c.Outage)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := sim.Config{Devices: c.Devices, Resources: c.Resources, Scenario: c.Scenario, For: c.For,
		NATS: g.NATS, Creds: g.Creds, Auth: c.Auth, Dir: c.Dir, Keep: c.Keep, DebugDir: c.DebugDir, Outage: c.Outage, ApplyEach: c.Apply == "each", Log: os.Stderr,
		Nice: sim.DefaultNice,
		Server: func(args ...string) *exec.Cmd {
			cmd := exec.Command(exe, args...)
			cmd.Env = append(os.Environ(), "FLEET_NATS=") // the child is the embedded server
			return cmd
		}}
	if c.Nice != nil {
		cfg.Nice = *c.Nice
	}
	rep, err := sim.Run(ctx, cfg)
	if rep != nil {
		if c.JSON() {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			if perr := enc.Encode(rep); perr != nil && err == nil {
				err = perr
			}
		} else {
			rep.Print(os.Stdout)
		}
	}
	return err
}
