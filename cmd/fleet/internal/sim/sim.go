// Package sim is `fleet sim`: N simulated devices in one process, each a
// real agent.Agent (manifest watch, diff, per-resource state machines,
// backoff, outbox, heartbeat, lifecycle) with its own NATS connection and,
// with auth, its own credentials. Only side effects are simulated: file
// resources live under a memory-backed root (tmpfs, /dev/shm by default)
// and each agent's Pebble store on its own in-memory file system. The
// server and the projection service run as a child `fleet server` process (unless an
// existing server is given), so their CPU and RSS are read from /proc apart
// from the agents'. Scenarios (idle, rollout, reconnect, drift) measure
// what the fleet costs and end with `fleet replay --verify` of the log and
// a comparison of the agents' own event counts with the log's.
//
// It lives under cmd/fleet because it sits where the commands do: it uses
// agent, projections, replay and events, and nothing below imports it.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// Scenarios.
const (
	Idle      = "idle"
	Rollout   = "rollout"
	Reconnect = "reconnect"
	Drift     = "drift"
)

// Scenarios lists the scenarios in the order help shows them.
var Scenarios = []string{Idle, Rollout, Reconnect, Drift}

// Config is one simulation.
type Config struct {
	Devices   int
	Resources int    // files per device in each generation
	Scenario  string // one of Scenarios
	// For is how long the measured phase of idle and drift lasts, and the
	// longest a rollout or a reconnect may take before the run fails.
	For time.Duration
	// NATS is an existing server to use; empty: the simulator runs
	// `fleet server` as a child process (see Server).
	NATS  string
	Creds string // with NATS: credentials of the simulator's control connection
	// Auth runs the child server with --auth and gives every device its own
	// credentials (events/auth).
	Auth bool
	// Dir is where roots, agent stores and the child server's data go; it
	// should be memory-backed (tmpfs). Empty: a new directory in /dev/shm.
	Dir string
	// Keep leaves Dir in place at the end.
	Keep bool
	// Server starts `fleet server ARGS...` (the running binary in `fleet sim`;
	// tests re-run the test binary).
	Server func(args ...string) *exec.Cmd
	// Outage is how long the reconnect scenario keeps the server down
	// (default 5s).
	Outage time.Duration
	// AgentOptions are added after the simulator's own (tests shorten
	// intervals; `fleet sim` passes none, so agents run with the defaults).
	AgentOptions []agent.Option
	// Settle is how long the fleet is left alone after a generation
	// converged before a phase is measured (default 5s: the file
	// reconciler refills its spares once writes pause).
	Settle time.Duration
	// TamperEvery is how often the drift scenario tampers with 1% of the
	// devices (default a minute).
	TamperEvery time.Duration
	// ApplyEach appends each generation with events.Apply a device (64 at
	// a time) instead of events.ApplyMany (1,000 a batch).
	ApplyEach bool
	// DebugDir, when set, is where the simulator writes a dump (its
	// goroutines, the devices not converged) when a phase stalls (stall.go).
	DebugDir string
	// Nice, from 0 to 19, is how much lower than the server the simulator
	// runs its own threads: every simulated agent and its bookkeeping
	// (nice_linux.go). On one machine it gives the server first claim on
	// the cores, as it has on a machine of its own in a fleet; the
	// devices' work still runs on the same cores. It cannot be undone
	// within the process. 0: the same priority. Linux only.
	Nice int
	// Log gets progress lines (nil: none).
	Log io.Writer
}

func (c *Config) check() error {
	switch {
	case c.Devices < 1:
		return fmt.Errorf("%w: --devices %d: must be at least 1", events.ErrInvalid, c.Devices)
	case c.Devices > 99999:
		return fmt.Errorf("%w: --devices %d: must be at most 99999", events.ErrInvalid, c.Devices)
	case c.Resources < 1 || c.Resources > events.MaxResources:
		return fmt.Errorf("%w: --resources %d: must be from 1 to %d", events.ErrInvalid, c.Resources, events.MaxResources)
	case c.For <= 0:
		return fmt.Errorf("%w: --for %s: must be positive", events.ErrInvalid, c.For)
	case c.NATS == "" && c.Server == nil:
		return errors.New("sim: no server: give an existing one (--nats) or a way to start fleet server")
	case c.Nice < 0 || c.Nice > 19:
		return fmt.Errorf("%w: --nice %d: must be from 0 to 19", events.ErrInvalid, c.Nice)
	case c.Nice > 0 && !niceSupported:
		return fmt.Errorf("%w: --nice %d: lowering the devices' priority works on Linux only; give --nice 0", events.ErrInvalid, c.Nice)
	case c.NATS != "" && c.Auth:
		return fmt.Errorf("%w: --auth configures the server the simulator starts: with --nats, give --creds instead", events.ErrInvalid)
	}
	for _, s := range Scenarios {
		if s == c.Scenario {
			return nil
		}
	}
	return fmt.Errorf("%w: --scenario %q: must be one of %v", events.ErrInvalid, c.Scenario, Scenarios)
}

// sim is a running simulation.
type sim struct {
	cfg      Config
	log      func(format string, args ...any)
	dir      string
	srv      *child   // nil with an existing server
	spawn    *spawner // with Config.Nice: starts the server at the original priority
	nc       *nats.Conn
	js       jetstream.JetStream
	st       *jsstore.Store
	model    readModel
	devs     []*device
	applied  int64 // manifests the simulator appended
	clock    *events.Clock
	gen      int64 // generation in force on every device
	copts    []nats.Option
	agentLog *logCounter
}

// controlOptions are the options of the simulator's own connections.
func (s *sim) controlOptions() []nats.Option {
	return append(append([]nats.Option(nil), s.copts...), nats.Name("fleet-sim"))
}

// Run runs the simulation and returns its report. A report is returned
// also with an error when the run got far enough to measure something.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Outage == 0 {
		cfg.Outage = 5 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.TamperEvery == 0 {
		cfg.TamperEvery = time.Minute
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &sim{cfg: cfg, log: func(string, ...any) {}, agentLog: newLogCounter()}
	if cfg.Log != nil {
		s.log = func(f string, a ...any) { fmt.Fprintf(cfg.Log, "fleet sim: "+f+"\n", a...) }
	}
	raiseFileLimit(cfg.Devices)
	if cfg.Nice > 0 {
		s.spawn = newSpawner()
		stop := make(chan struct{})
		defer close(stop)
		if err := lowerPriority(cfg.Nice, s.spawn, stop); err != nil {
			return nil, err
		}
	}
	began := time.Now()
	if err := s.setup(ctx); err != nil {
		s.teardown()
		return nil, err
	}
	defer s.teardown()
	rep := &Report{Scenario: cfg.Scenario, Devices: cfg.Devices, Resources: cfg.Resources, Nice: cfg.Nice,
		StartSeconds: time.Since(began).Seconds(), Root: s.dir, Store: "one Pebble store per device (agent defaults: 2 MiB memtable, 1 MiB block cache), each on its own in-memory file system (agent.WithStoreFS)"}
	if s.srv == nil {
		rep.Server.Note = "existing server (--nats): its CPU and RSS are not measured"
	} else {
		rep.Server.Note = "fleet server child process (embedded JetStream with fsync before ack, projection service, HTTP API)"
	}
	err := s.run(ctx, rep)
	if err != nil {
		s.log("%v (stopping the agents, then verifying what is on the log)", err)
	}
	if verr := s.finish(ctx, rep); err == nil {
		err = verr
	}
	return rep, err
}

func (s *sim) setup(ctx context.Context) error {
	dir := s.cfg.Dir
	if dir == "" {
		base := "/dev/shm"
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			base = os.TempDir()
		}
		d, err := os.MkdirTemp(base, "fleet-sim-")
		if err != nil {
			return fmt.Errorf("simulation directory: %w", err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("simulation directory %s: %w", dir, err)
	}
	s.dir = dir
	url := s.cfg.NATS
	var copts []nats.Option
	if s.cfg.Creds != "" {
		o, err := auth.ClientOptions(s.cfg.Creds)
		if err != nil {
			return err
		}
		copts = o
	}
	if url == "" {
		srv, err := newChild(s.cfg.Server, filepath.Join(dir, "server"), s.cfg.Auth, s.spawn)
		if err != nil {
			return err
		}
		if err := srv.Start(); err != nil {
			return err
		}
		s.srv = srv
		url = srv.NATSURL
		s.model = newHTTPModel(srv.HTTP)
		if srv.Creds != "" {
			copts = append(copts, nats.UserCredentials(srv.Creds))
		}
		s.log("fleet server (pid %d) at %s, API %s, data %s", srv.cmd.Process.Pid, url, srv.HTTP(), srv.data)
	}
	s.copts = copts
	nc, err := nats.Connect(url, append(s.controlOptions(), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	s.nc = nc
	if s.js, err = jetstream.New(nc); err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if s.st, err = jsstore.Attach(actx, s.js); err != nil {
		return fmt.Errorf("%w (is fleet server running at %s?)", err, url)
	}
	if s.model == nil {
		s.model = &microModel{c: api.NewClient(nc)}
	}
	if s.clock, err = events.NewClock(events.ClockState{}, nil); err != nil {
		return err
	}
	var authority *auth.Authority
	if s.cfg.Auth {
		if authority, err = auth.Open(filepath.Join(s.srv.data, "auth")); err != nil {
			return err
		}
	}
	logger := slog.New(s.agentLog)
	s.devs = make([]*device, s.cfg.Devices)
	for i := range s.devs {
		id := deviceID(i)
		s.devs[i] = &device{id: id, root: filepath.Join(dir, "roots", id), state: filepath.Join(dir, "state", id)}
	}
	start := time.Now()
	err = parallel(len(s.devs), 32, func(i int) error {
		return startDevice(ctx, s.devs[i], url, authority, logger, s.cfg.AgentOptions)
	})
	if err != nil {
		return err
	}
	s.log("%d agents started in %s", len(s.devs), time.Since(start).Round(time.Millisecond))
	return nil
}

// microModel reads the projection service over its micro endpoints.
type microModel struct{ c *api.Client }

func (m *microModel) Devices(ctx context.Context) ([]projections.Device, error) {
	return m.c.Devices(ctx)
}
func (m *microModel) Status(ctx context.Context) (api.Status, error) { return m.c.Status(ctx) }

// teardown stops agents, connections and the server, and removes the
// directory unless asked to keep it.
func (s *sim) teardown() {
	s.stopAgents()
	if s.nc != nil {
		s.nc.Close()
	}
	if s.srv != nil {
		s.srv.Stop()
	}
	if s.dir != "" && !s.cfg.Keep && s.cfg.Dir == "" {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *sim) stopAgents() {
	_ = parallel(len(s.devs), 256, func(i int) error {
		d := s.devs[i]
		if d == nil {
			return nil
		}
		if d.h != nil {
			_ = d.h.Stop()
			d.h = nil
		}
		if d.nc != nil {
			d.nc.Close()
			d.nc = nil
		}
		return nil
	})
}

// raiseFileLimit lifts the open-file limit for N agents (a connection each,
// and a file watch for the first 128: the stores are in memory); without
// privileges the soft limit goes up to the hard one (Go does that already
// at start).
func raiseFileLimit(n int) {
	want := uint64(n*2 + 1024)
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur >= want {
		return
	}
	nl := syscall.Rlimit{Cur: want, Max: max(want, l.Max)}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl) != nil {
		nl = syscall.Rlimit{Cur: l.Max, Max: l.Max}
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl)
	}
}

// selfUsage is this process's CPU time and RSS (the agents and the simulator).
func selfUsage() procUsage {
	u, err := readProc(os.Getpid())
	if err != nil {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return procUsage{At: time.Now(), CPU: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	}
	return u
}
