// Package agentcli is the `agent` command shared by `fleet agent` and the
// slim `fleet-agent` binary: its flags, help and what it runs. It links no
// NATS server.
package agentcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
)

// Cmd is the agent command's flags.
type Cmd struct {
	Config        string            `placeholder:"FILE" env:"FLEET_AGENT_CONFIG" help:"Read settings from this YAML file (e.g. /etc/fleet/agent.yaml): the flags' names as keys, without --; the command line and the environment win over it."`
	Device        string            `required:"" placeholder:"ID" help:"This device's id (1 to 64 of A-Z a-z 0-9 _ -)."`
	Root          string            `default:"/" placeholder:"DIR" help:"Directory file resources are placed under; nothing outside it is touched."`
	State         string            `default:"/var/lib/fleet-agent" placeholder:"DIR" help:"Where the agent keeps its local store (manifest, states, outbox)."`
	DriftInterval time.Duration     `default:"1m" help:"How often Ready resources are checked for drift."`
	Concurrency   int               `default:"16" help:"How many reconciler calls run at once (file resources due together are applied as one batch)."`
	MaxClockSkew  time.Duration     `default:"1m" help:"How far this device's clock may be off the server's before the agent records ClockSkewDetected and stamps events with the corrected time."`
	AllowExec     bool              `help:"Allow exec resources (every run is recorded as an event)."`
	Label         map[string]string `placeholder:"K=V" mapsep:"none" help:"A device label, recorded in DeviceRegistered; repeat for more."`
	Deregister    bool              `help:"Record that this device leaves the fleet (DeviceDeregistered), publish it, and exit."`
	Parked        bool              `help:"List the events the log refused for good (too large for it), kept in the local store, and exit. Stop the running agent first: it holds the store."`
	Trust         []string          `placeholder:"PUBKEY" env:"FLEET_TRUST" help:"Apply only manifests signed by this key (ed25519:... or a key file; see 'fleet key'); repeat to trust several. Others are recorded as ManifestRejected."`
	Format        string            `short:"o" enum:"table,json" default:"table" help:"Output format: table (text logs) or json (JSON logs and result)."`

	log *slog.Logger // set by tests; nil: by --format, to standard error
}

// Help is the command's long help, with examples.
func (c *Cmd) Help() string {
	return `Runs the device agent: it reads the device's manifest from the log, converges
each resource (file, systemdUnit, container, exec) through its state machine,
re-checks Ready resources for drift, and records every transition and attempt
as an event. It works offline from its local store and publishes what it
recorded, in order, when the server is reachable again. SIGTERM or Ctrl-C:
no new attempts, running ones get 10s, the outbox is flushed, exit 0.

Examples:
  fleet agent --device pi-01 --root /srv/pi-01 --state /var/lib/fleet-agent/pi-01
  fleet-agent --nats nats://hub:4222 --creds pi-01.creds --device pi-01 --label site=lab --label rack=3
  fleet agent --device pi-01 --drift-interval 10s --concurrency 4 -o json
  fleet agent --device pi-01 --state /var/lib/fleet-agent/pi-01 --deregister
  fleet-agent --device pi-01 --parked -o json      # events the log refused for good
  fleet agent --device pi-01 --trust ed25519:aBFZRizS8HJUyS9CgBwQc6u+Ii1jKfqjrUviXVUm8I0=
  fleet-agent --config /etc/fleet/agent.yaml     # settings from a file (deploy/systemd/agent.yaml)

Config file (YAML, every key optional, unknown keys refused):
  device: pi-01
  nats: nats://hub:4222
  root: /
  drift-interval: 30s
  label: {site: lab, rack: "3"}
  trust: [ed25519:aBFZRizS8HJUyS9CgBwQc6u+Ii1jKfqjrUviXVUm8I0=]`
}

// ConnectOptions are the NATS options an agent connects with: it starts
// without a server and reconnects forever, 1 to 4 s after each failed try
// (nats.go's default jitter is 100 ms: the thousands of devices that lost a
// restarted server together came back within one such window).
func ConnectOptions() []nats.Option {
	return []nats.Option{
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(3*time.Second, 3*time.Second),
		nats.ReconnectBufSize(-1),   // publishes go through the outbox, never the reconnect buffer
		nats.IgnoreAuthErrorAbort(), // a suspended device (fleet server's rate guard) is let in again later
	}
}

// ConnectionLogging are NATS options that log what the connection itself
// reports: credentials the server refuses (the agent keeps retrying and
// recording locally) and other asynchronous errors, so that an operator
// reading the journal sees why a device is stale. The connection lost and
// back again is logged by the agent (agent.Run), with how long it was away
// and what its outbox holds, once per change; the refusal is warned once
// per change too, not at every reconnect attempt.
func (c *Cmd) ConnectionLogging() []nats.Option {
	log := c.logger()
	// a refused device is refused at every reconnect attempt (about once a
	// second): warn once until it is let in again
	var warned atomic.Bool
	return []nats.Option{
		nats.ReconnectHandler(func(*nats.Conn) { warned.Store(false) }),
		nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) ||
				strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
				if warned.Swap(true) {
					return
				}
				log.Warn("the server refused this device's credentials: suspended by the rate guard or revoked by an operator (or wrong --creds); see 'fleet device list' on the server; "+
					"the agent keeps converging offline and retries", "device", c.Device, "error", err.Error())
				return
			}
			log.Info("NATS error", "device", c.Device, "error", err.Error())
		}),
	}
}

// Options turns the flags into agent options, refusing bad values with an
// error that wraps events.ErrInvalid.
func (c *Cmd) Options() ([]agent.Option, error) {
	if err := events.CheckID("--device", c.Device); err != nil {
		return nil, err
	}
	if c.Concurrency < 1 {
		return nil, fmt.Errorf("%w: --concurrency %d: must be at least 1", events.ErrInvalid, c.Concurrency)
	}
	if c.DriftInterval <= 0 {
		return nil, fmt.Errorf("%w: --drift-interval %s: must be positive", events.ErrInvalid, c.DriftInterval)
	}
	if c.MaxClockSkew < 0 {
		return nil, fmt.Errorf("%w: --max-clock-skew %s: must be positive", events.ErrInvalid, c.MaxClockSkew)
	}
	if c.MaxClockSkew == 0 { // a Cmd built in code
		c.MaxClockSkew = agent.DefaultMaxClockSkew
	}
	for k := range c.Label {
		if !events.ValidID(k) {
			return nil, fmt.Errorf("%w: --label %q: key must be %s", events.ErrInvalid, k, events.IDRule)
		}
	}
	if err := c.absPaths(); err != nil {
		return nil, err
	}
	if st, err := os.Stat(c.Root); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: --root %s: must be an existing directory", events.ErrInvalid, c.Root)
	}
	opts := []agent.Option{
		agent.WithRoot(c.Root), agent.WithStateDir(c.State), agent.WithDriftInterval(c.DriftInterval),
		agent.WithConcurrency(c.Concurrency), agent.WithAllowExec(c.AllowExec), agent.WithLabels(c.Label),
		agent.WithMaxClockSkew(c.MaxClockSkew),
		agent.WithLogger(c.logger()),
	}
	if len(c.Trust) > 0 {
		keys, err := events.LoadTrust(c.Trust)
		if err != nil {
			return nil, err
		}
		opts = append(opts, agent.WithManifestCheck(events.TrustCheck(keys)))
	}
	return opts, nil
}

// absPaths makes --root and --state absolute against the working directory
// the agent was started in, once, before anything uses them: the file
// reconciler checks every path against the root, and a relative root would
// make every file resource escape it (PathEscapesRoot), and a relative state
// directory would move with a later change of directory.
func (c *Cmd) absPaths() error {
	for _, f := range []struct {
		name string
		p    *string
	}{{"--root", &c.Root}, {"--state", &c.State}} {
		if *f.p == "" {
			return fmt.Errorf("%w: %s: must not be empty", events.ErrInvalid, f.name)
		}
		abs, err := filepath.Abs(*f.p)
		if err != nil {
			return fmt.Errorf("%w: %s %s: %v", events.ErrInvalid, f.name, *f.p, err)
		}
		*f.p = abs
	}
	return nil
}

func (c *Cmd) logger() *slog.Logger {
	if c.log != nil {
		return c.log
	}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// Exec runs the agent over nc and log until ctx is done (or, with
// --deregister, records and publishes DeviceDeregistered). log is the log
// over nc (the caller wires the adapter in: jsstore.NewLazy(nc)). out gets
// the result of --deregister.
func (c *Cmd) Exec(ctx context.Context, nc *nats.Conn, log agent.Log, out io.Writer) error {
	opts, err := c.Options()
	if err != nil {
		return err
	}
	opts = append(opts, agent.WithLog(log))
	if c.Parked && c.Deregister {
		return fmt.Errorf("%w: --parked and --deregister: give one", events.ErrInvalid)
	}
	a, err := agent.New(c.Device, opts...)
	if err != nil {
		return err
	}
	defer a.Close()
	if c.Parked {
		return c.printParked(a, out)
	}
	if !c.Deregister {
		return a.Run(ctx, nc)
	}
	if err := a.Deregister(ctx, "deregistered with fleet agent --deregister"); err != nil {
		return err
	}
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ferr := a.Flush(fctx, nc)
	res := map[string]any{"device": c.Device, "deregistered": true, "published": ferr == nil, "pending": a.OutboxLen()}
	if c.Format == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if ferr == nil {
		fmt.Fprintf(out, "device %s: deregistered (DeviceDeregistered published)\n", c.Device)
	} else {
		fmt.Fprintf(out, "device %s: deregistered locally; %d events wait for the log and go out on the next start\n", c.Device, a.OutboxLen())
	}
	if ferr != nil {
		return fmt.Errorf("publish DeviceDeregistered: %w", ferr)
	}
	return nil
}

// printParked lists the events the log refused for good.
func (c *Cmd) printParked(a *agent.Agent, out io.Writer) error {
	parked, err := a.ParkedEvents()
	if err != nil {
		return err
	}
	if c.Format == "json" {
		if parked == nil {
			parked = []agent.ParkedEvent{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(parked)
	}
	if len(parked) == 0 {
		fmt.Fprintf(out, "device %s: no parked events\n", c.Device)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tID\tSUBJECT\tBYTES\tREFUSED WITH")
	for _, p := range parked {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\n", p.Seq, p.ID, p.Subject, len(p.Event), p.Error)
	}
	return tw.Flush()
}
