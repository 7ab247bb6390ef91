package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures/manifests"
	"github.com/fleet-dev/fleet/projections"
)

// demoActor is who applies the demo's manifests.
const demoActor = "user:demo"

// demoDevice is one device of the demo: its temporary root and state, its
// cuttable link to the server, and its running agent.
type demoDevice struct {
	id, ring    string
	root, state string
	link        *demoLink
	nc          *nats.Conn
	agent       *agent.Handle
}

// demo is a started demo: server, agents and a live fold of the log.
type demo struct {
	c     *DemoCmd
	out   io.Writer
	dir   string
	url   string // dashboard
	t0    time.Time
	rs    *RunningServer
	st    *jsstore.Store
	clock *events.Clock

	devices                []*demoDevice
	canaries               []*demoDevice
	drifting, offline, bad *demoDevice

	fold       *demoFold
	stopFollow context.CancelFunc
	followDone chan struct{}

	// what the story saw, for the summary
	beforeRollout time.Time
	firstReady    time.Duration
	milestones    []demoMilestone
}

type demoMilestone struct {
	Step  string        `json:"step"`
	After time.Duration `json:"afterNs"`
	What  string        `json:"what"`
}

// startDemo starts the server (printing the dashboard address first) and
// the agents. On error the returned demo, if not nil, must still be stopped.
func startDemo(ctx context.Context, c *DemoCmd, dir string, out io.Writer) (*demo, error) {
	d := &demo{c: c, out: out, dir: dir, t0: time.Now()}
	httpAddr := demoHTTPAddr(c.HTTP)
	if httpAddr != c.HTTP {
		fmt.Fprintf(out, "fleet demo: %s is taken; the dashboard uses a free port instead\n", c.HTTP)
	}
	sc := &ServerCmd{
		Data: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", HTTP: httpAddr,
		RelaxedSync: c.RelaxedSync, Replicas: 1, HeartbeatTTL: 5 * time.Second,
	}
	rs, err := sc.Start(ctx, &Globals{}, nil) // always embedded: never FLEET_NATS
	if err != nil {
		return nil, err
	}
	d.rs, d.st = rs, rs.Env.Store
	d.url = "http://" + rs.Env.HTTPAddr + "/"
	sync := "fsync before ack"
	if c.RelaxedSync {
		sync = "relaxed sync"
	}
	fmt.Fprintf(out, "fleet demo: dashboard %s\n", d.url)
	fmt.Fprintf(out, "  open it now and follow along; NATS %s (embedded, %s), data in %s\n", rs.Env.NATSURL, sync, dir)

	d.clock, err = events.NewClock(events.ClockState{}, nil)
	if err != nil {
		return d, err
	}
	fctx, cancel := context.WithCancel(context.Background())
	d.fold = newDemoFold()
	d.stopFollow, d.followDone = cancel, make(chan struct{})
	go func() {
		defer close(d.followDone)
		d.fold.follow(fctx, rs.Env)
	}()

	if err := d.startAgents(ctx); err != nil {
		return d, err
	}
	return d, nil
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) milestone(step, format string, args ...any) {
	what := fmt.Sprintf(format, args...)
	d.milestones = append(d.milestones, demoMilestone{Step: step, After: time.Since(d.t0), What: what})
	d.say("%s", what)
}

func (d *demo) startAgents(ctx context.Context) error {
	natsAddr := strings.TrimPrefix(d.rs.Env.NATSURL, "nats://")
	if u, err := url.Parse(d.rs.Env.NATSURL); err == nil && u.Host != "" {
		natsAddr = u.Host
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if d.c.Verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	n := d.c.Devices
	nCanary := min(max(n/2, 1), n-2)
	for i := 1; i <= n; i++ {
		dev := &demoDevice{id: fmt.Sprintf("pi-%02d", i), ring: "main"}
		if i <= nCanary {
			dev.ring = "canary"
		}
		dev.root = filepath.Join(d.dir, "devices", dev.id, "root")
		dev.state = filepath.Join(d.dir, "devices", dev.id, "state")
		if err := os.MkdirAll(dev.root, 0o755); err != nil {
			return err
		}
		d.devices = append(d.devices, dev)
	}
	d.canaries = d.devices[:nCanary]
	d.drifting = d.devices[0]
	d.offline = d.devices[n-2]
	d.bad = d.devices[n-1]
	// On the failing device /etc/sensor is a regular file, so nothing can be
	// written under it.
	if err := os.MkdirAll(filepath.Join(d.bad.root, "etc"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d.bad.root, "etc", "sensor"), []byte("a file where a directory should be\n"), 0o644); err != nil {
		return err
	}
	for _, dev := range d.devices {
		link, err := newDemoLink(natsAddr)
		if err != nil {
			return fmt.Errorf("link for %s: %w", dev.id, err)
		}
		dev.link = link
		nc, err := nats.Connect(link.URL(), append(agentcli.ConnectOptions(), nats.Name("fleet-demo "+dev.id),
			nats.ReconnectWait(250*time.Millisecond))...)
		if err != nil {
			return fmt.Errorf("connect %s: %w", dev.id, err)
		}
		dev.nc = nc
		h, err := agent.Start(ctx, nc, dev.id, agent.WithLog(jsstore.NewLazy(nc)),
			agent.WithRoot(dev.root), agent.WithStateDir(dev.state),
			agent.WithLabels(map[string]string{"site": "lab", "ring": dev.ring}),
			agent.WithDriftInterval(3*time.Second), agent.WithBackoff(time.Second, agent.DefaultBackoffMax), // a resource failing for good backs off to the documented 5 min cap
			agent.WithHeartbeatInterval(2*time.Second), agent.WithManifestPoll(2*time.Second),
			agent.WithConcurrency(4), agent.WithShutdownGrace(2*time.Second), agent.WithLogger(logger))
		if err != nil {
			return fmt.Errorf("agent %s: %w", dev.id, err)
		}
		dev.agent = h
	}
	d.say("started %d agents (%s … %s), each on its own root under %s", n, d.devices[0].id, d.devices[n-1].id, filepath.Join(d.dir, "devices"))
	return nil
}

// stop stops agents, links and server.
func (d *demo) stop() {
	var wg sync.WaitGroup
	for _, dev := range d.devices {
		if dev.link != nil {
			dev.link.Restore() // let every agent flush what it holds
		}
		if dev.agent != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := dev.agent.Stop(); err != nil {
					fmt.Fprintf(os.Stderr, "fleet demo: agent %s: %v\n", dev.id, err)
				}
			}()
		}
	}
	wg.Wait()
	for _, dev := range d.devices {
		if dev.nc != nil {
			dev.nc.Close()
		}
		if dev.link != nil {
			dev.link.Close()
		}
	}
	if d.stopFollow != nil {
		d.stopFollow()
		<-d.followDone
	}
	if d.rs != nil {
		d.rs.Stop()
	}
}

// manifest reads a fixture manifest, adding the resources of extra ones.
func demoManifest(names ...string) (events.Manifest, error) {
	var m events.Manifest
	for _, name := range names {
		b, err := fs.ReadFile(manifests.FS, name)
		if err != nil {
			return m, err
		}
		part, err := events.ParseManifest(b)
		if err != nil {
			return m, fmt.Errorf("fixture %s: %w", name, err)
		}
		m.Resources = append(m.Resources, part.Resources...)
	}
	return m, m.Validate()
}

func (d *demo) apply(ctx context.Context, devs []*demoDevice, names ...string) error {
	for _, dev := range devs {
		use := names
		if dev == d.bad {
			use = append(slices.Clone(names), "demo/failing.yaml")
		}
		m, err := demoManifest(use...)
		if err != nil {
			return err
		}
		if _, err := events.Apply(ctx, d.st, d.clock, dev.id, m, demoActor, nil); err != nil {
			return fmt.Errorf("apply to %s: %w", dev.id, err)
		}
	}
	return nil
}

// waitFor polls cond on the live fold until it reports done, printing its
// progress line whenever it changes.
func (d *demo) waitFor(ctx context.Context, what string, timeout time.Duration, cond func(f *demoFold) (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		d.fold.mu.Lock()
		done, progress := cond(d.fold)
		wake := d.fold.changed()
		d.fold.mu.Unlock()
		if progress != "" && progress != last {
			d.say("  %s", progress)
			last = progress
		}
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s: not done after %s (%s)", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

const demoStepTimeout = 90 * time.Second

// play runs the story and returns its summary.
func (d *demo) play(ctx context.Context) (*demoSummary, error) {
	steps := []func(context.Context) error{d.stepConverge, d.stepRollout, d.stepDrift, d.stepOffline, d.stepBackoff}
	for i, step := range steps {
		if i > 0 && d.c.Pace > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d.c.Pace):
			}
		}
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return d.summary(ctx)
}

func ids(devs []*demoDevice) string {
	var s []string
	for _, d := range devs {
		s = append(s, d.id)
	}
	return strings.Join(s, ", ")
}

func (d *demo) stepConverge(ctx context.Context) error {
	if err := d.apply(ctx, d.devices, "demo/base.yaml"); err != nil {
		return err
	}
	d.milestone("apply", "1/5 generation 1 applied to %d devices (motd, app-config, hosts-extra; %s also gets sensor-calib, meant to fail)", len(d.devices), d.bad.id)
	return d.waitFor(ctx, "first convergence", demoStepTimeout, func(f *demoFold) (bool, string) {
		settled, ready, resReady, resAll := 0, 0, 0, 0
		for _, dev := range d.devices {
			v, ok := f.fleet.Device(dev.id)
			if !ok {
				continue
			}
			for _, r := range v.Resources {
				resAll++
				if r.State == "Ready" {
					resReady++
				}
			}
			if v.ObservedGeneration >= 1 {
				settled++
			}
			if c, _ := v.Condition(projections.CondReady); c.Status == projections.True && v.ObservedGeneration >= 1 {
				ready++
				if d.firstReady == 0 {
					d.firstReady = time.Since(d.t0)
					d.milestone("first-ready", "    first converged device: %s, %.1fs after start", dev.id, d.firstReady.Seconds())
				}
			}
		}
		return settled == len(d.devices), fmt.Sprintf("converging: %d/%d devices settled on generation 1, %d Ready (%d/%d resources Ready)", settled, len(d.devices), ready, resReady, resAll)
	})
}

func (d *demo) stepRollout(ctx context.Context) error {
	time.Sleep(300 * time.Millisecond)
	d.beforeRollout = time.Now().UTC()
	time.Sleep(300 * time.Millisecond)
	if err := d.apply(ctx, d.canaries, "demo/rollout.yaml"); err != nil {
		return err
	}
	d.milestone("rollout", "2/5 rollout: generation 2 (app-config log_level=debug, new feature-flags) to the canary ring: %s; the other %d devices stay on generation 1", ids(d.canaries), len(d.devices)-len(d.canaries))
	return d.waitFor(ctx, "rollout", demoStepTimeout, func(f *demoFold) (bool, string) {
		done := 0
		for _, dev := range d.canaries {
			v, _ := f.fleet.Device(dev.id)
			if c, _ := v.Condition(projections.CondReady); v.ObservedGeneration >= 2 && (c.Status == projections.True || dev == d.bad) {
				done++
			}
		}
		return done == len(d.canaries), fmt.Sprintf("rollout: %d/%d canaries Ready on generation 2", done, len(d.canaries))
	})
}

// driftCount returns how many drifts the log shows for a resource, and
// whether the last one was corrected.
func driftCount(f *demoFold, device, resource string) (int, bool) {
	for _, r := range f.drift.Device(device) {
		if r.Resource == resource {
			last := r.Drifts[len(r.Drifts)-1]
			return r.Count, last.CorrectedAt != nil
		}
	}
	return 0, false
}

func (d *demo) stepDrift(ctx context.Context) error {
	dev := d.drifting
	d.fold.mu.Lock()
	before, _ := driftCount(d.fold, dev.id, "motd")
	d.fold.mu.Unlock()
	path := filepath.Join(dev.root, "etc", "motd")
	edited := time.Now()
	if err := os.WriteFile(path, []byte("hacked by hand\n"), 0o644); err != nil {
		return err
	}
	d.milestone("drift", "3/5 drift: someone edited /etc/motd on %s behind the agent's back", dev.id)
	err := d.waitFor(ctx, "drift corrected", demoStepTimeout, func(f *demoFold) (bool, string) {
		n, fixed := driftCount(f, dev.id, "motd")
		switch {
		case n <= before:
			return false, "waiting for the agent to notice"
		case !fixed:
			return false, "DriftDetected on the log (content differs); correcting"
		}
		return true, fmt.Sprintf("corrected: /etc/motd is back, %dms after the edit (DriftDetected, then Ready again)", time.Since(edited).Milliseconds())
	})
	return err
}

func (d *demo) stepOffline(ctx context.Context) error {
	dev := d.offline
	dev.link.Cut()
	d.milestone("offline", "4/5 offline: %s lost its network (its agent keeps running on its local store)", dev.id)
	cutAt := time.Now()
	for dev.nc.IsConnected() {
		if time.Since(cutAt) > 10*time.Second {
			return fmt.Errorf("demo: %s still connected 10s after its link was cut", dev.id)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	path := filepath.Join(dev.root, "etc", "app", "config.toml")
	want, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte("log_level = \"trace\" # edited while offline\n"), 0o640); err != nil {
		return err
	}
	d.say("  while it is offline, its /etc/app/config.toml is edited")
	deadline := time.Now().Add(demoStepTimeout)
	for {
		got, _ := os.ReadFile(path)
		if bytes.Equal(got, want) && dev.agent.Agent.OutboxLen() > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: offline device %s did not correct its drift within %s", dev.id, demoStepTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	queued := dev.agent.Agent.OutboxLen()
	d.say("  %s corrected it on its own, offline: the file is back; %d events wait in its outbox", dev.id, queued)
	hold := max(2*time.Second, 3*d.c.Pace) // with the default pace, long enough for the dashboard to show it Stale
	d.say("  it stays offline for %s", hold)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(hold):
	}
	d.fold.mu.Lock()
	before, _ := driftCount(d.fold, dev.id, "app-config")
	d.fold.mu.Unlock()
	dev.link.Restore()
	back := time.Now()
	d.milestone("online", "    %s is back online: publishing its queued events in order", dev.id)
	return d.waitFor(ctx, "offline device caught up", demoStepTimeout, func(f *demoFold) (bool, string) {
		n, fixed := driftCount(f, dev.id, "app-config")
		out := dev.agent.Agent.OutboxLen()
		if n > before && fixed && out == 0 {
			return true, fmt.Sprintf("caught up in %dms: the log now holds the drift it corrected while offline, at the time it happened", time.Since(back).Milliseconds())
		}
		return false, fmt.Sprintf("catching up: %d events still in its outbox", out)
	})
}

func (d *demo) stepBackoff(ctx context.Context) error {
	dev := d.bad
	d.milestone("backoff", "5/5 failure: %s's sensor-calib cannot be written (/etc/sensor is a file); the agent retries with backoff", dev.id)
	return d.waitFor(ctx, "backoff", demoStepTimeout, func(f *demoFold) (bool, string) {
		x, ok := f.fleet.Explain(dev.id, "sensor-calib")
		if !ok || x.State != "Failed" || x.Attempts < 3 || x.RetryAfter == nil {
			return false, ""
		}
		var gaps []string
		for i := 1; i < len(x.LastAttempts); i++ {
			gaps = append(gaps, x.LastAttempts[i].At.Sub(x.LastAttempts[i-1].At).Round(100*time.Millisecond).String())
		}
		return true, fmt.Sprintf("Failed after %d attempts (%s); gaps between attempts %s; next retry in %s",
			x.Attempts, shortErr(d.clean(x.Error)), strings.Join(gaps, ", "), time.Until(*x.RetryAfter).Round(100*time.Millisecond))
	})
}

// clean shows device roots as <root> in an error.
func (d *demo) clean(s string) string {
	for _, dev := range d.devices {
		s = strings.ReplaceAll(s, dev.root, "<root>")
	}
	return s
}

// shortErr keeps the end of an error, where its cause is.
func shortErr(s string) string {
	if r := []rune(s); len(r) > 100 {
		return "…" + string(r[len(r)-99:])
	}
	return s
}
