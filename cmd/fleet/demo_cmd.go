package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func init() {
	register("demo", "Play the whole story on one machine: server, agents, a rollout, drift, an offline device, a failure; with the dashboard.", "Getting started", &DemoCmd{})
}

// DemoCmd is `fleet demo`.
type DemoCmd struct {
	Devices     int           `default:"12" help:"How many devices to run (3 to 100), named pi-01, pi-02, ..."`
	For         time.Duration `name:"for" default:"0s" placeholder:"DURATION" help:"Run this long in all, then exit; 0 runs until Ctrl-C. The story always plays to its summary first."`
	HTTP        string        `name:"http" default:"127.0.0.1:8080" placeholder:"ADDR" help:"Dashboard address; if it is taken, a free port is used instead."`
	Pace        time.Duration `default:"2s" placeholder:"DURATION" help:"Pause between the story's steps, to follow them in the browser."`
	RelaxedSync bool          `help:"Acknowledge writes before fsync (the demo's data is temporary anyway)."`
	Keep        bool          `help:"Keep the temporary directory (server data, device roots) instead of removing it."`
	Verbose     bool          `help:"Show the agents' own logs on standard error."`
	Output
}

// Help is shown by `fleet demo --help`.
func (c *DemoCmd) Help() string {
	return `Starts everything on this machine in a temporary directory: an embedded NATS
JetStream server on a free port (so it runs beside any other NATS server), the
projection service, the HTTP API and the dashboard, and N agents (the real
agent code; each device's files live under its own temporary root). Then it
plays a story you can follow here and in the browser:

  1. generation 1 is applied to every device and they converge;
  2. generation 2 is rolled out to part of the fleet (the canary ring);
  3. a file is edited behind the agent's back: drift detected and corrected;
  4. a device loses its network, keeps correcting drift from its local
     store, and publishes its queued events in order when it is back;
  5. one device has a resource that cannot be written: it fails and backs off.

It ends with a summary (the fleet, the drift history, a time-travel answer
from before the rollout, and the log verified against the state machine),
then keeps serving the dashboard until Ctrl-C or --for, stops everything,
removes its temporary data and exits 0. It never uses --nats / FLEET_NATS.

Examples:
  fleet demo                                  # 12 devices, until Ctrl-C
  fleet demo --devices 6 --for 2m             # smaller, stops by itself
  fleet demo --pace 10s                       # slower, to narrate it
  fleet demo --http 127.0.0.1:0 -o json       # any free port; summary as JSON`
}

// Run plays the demo.
func (c *DemoCmd) Run(ctx context.Context, g *Globals) error {
	if c.Devices < 3 || c.Devices > 100 {
		return usagef("--devices %d: must be between 3 and 100", c.Devices)
	}
	if c.Pace < 0 || c.Pace > time.Minute {
		return usagef("--pace %s: must be between 0s and 1m", c.Pace)
	}
	if c.For < 0 {
		return usagef("--for %s: must not be negative", c.For)
	}
	if c.HTTP == "" {
		return usagef("--http: must be an address (host:port); the demo needs its dashboard")
	}
	if _, _, err := net.SplitHostPort(c.HTTP); err != nil {
		return usagef("--http %q: must be host:port: %v", c.HTTP, err)
	}
	var progress io.Writer = os.Stdout
	if c.JSON() {
		progress = os.Stderr // stdout carries only the JSON summary
	}
	start := time.Now()
	var deadline <-chan time.Time
	if c.For > 0 {
		t := time.NewTimer(c.For)
		defer t.Stop()
		deadline = t.C
	}

	dir, err := os.MkdirTemp("", "fleet-demo-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if c.Keep {
			fmt.Fprintf(progress, "fleet demo: data kept in %s\n", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "fleet demo: remove %s: %v\n", dir, err)
		}
	}()

	s, err := startDemo(ctx, c, dir, progress)
	if s != nil {
		defer s.stop()
	}
	if err != nil {
		return err
	}
	sum, err := s.play(ctx)
	if ctx.Err() != nil {
		fmt.Fprintln(progress, "\nfleet demo: interrupted; stopping")
		return nil
	}
	if err != nil {
		return err
	}
	if c.JSON() {
		if err := printJSON(sum); err != nil {
			return err
		}
	} else {
		sum.print(os.Stdout)
	}
	if !sum.Verify.Passed {
		return fmt.Errorf("the log did not verify: %s", sum.Verify.Summary)
	}

	if left := time.Until(start.Add(c.For)); deadline != nil && left < time.Second {
		fmt.Fprintf(progress, "\n--for %s has elapsed.\n", c.For)
	} else if deadline != nil {
		left := time.Until(start.Add(c.For)).Round(time.Second)
		fmt.Fprintf(progress, "\nThe dashboard stays up at %s for %s more (--for %s); Ctrl-C to stop now.\n", s.url, max(left, 0), c.For)
	} else {
		fmt.Fprintf(progress, "\nThe dashboard stays up at %s; the agents keep running. Ctrl-C to stop.\n", s.url)
	}
	select {
	case <-ctx.Done():
	case <-deadline:
	}
	fmt.Fprintln(progress, "fleet demo: stopping agents and server, removing temporary data")
	return nil
}

// demoHTTPAddr returns addr if it can be listened on, else the same host
// with a free port.
func demoHTTPAddr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return addr
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.JoinHostPort(host, "0")
}
