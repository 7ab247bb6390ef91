package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/rollout"
)

// rolloutFleet is a server and n real agents labelled site=lab, every one
// Ready on generation 1 (a file under /srv), the manifest a rollback brings back.
type rolloutFleet struct {
	t      *testing.T
	rs     *RunningServer
	dir    string
	ids    []string
	base   events.Manifest
	cl     *api.Client
	natsF  string
	agents map[string]*agent.Handle
}

func file(id, path string) events.Resource {
	return events.Resource{ID: id, Kind: events.KindFile, File: &events.FileSpec{Path: path, Content: id + "\n", Mode: "0644"}}
}

// startRolloutFleet starts the fleet; serverCtl runs the server's own
// rollout controller (else the test runs its controllers); extra gives
// each agent more options (its id and folder).
func startRolloutFleet(t *testing.T, n int, serverCtl bool, extra ...func(id, dir string) []agent.Option) *rolloutFleet {
	t.Helper()
	return startRolloutFleetSigned(t, n, serverCtl, nil, extra...)
}

// startRolloutFleetSigned is startRolloutFleet with generation 1 signed by
// signer (nil: unsigned).
func startRolloutFleetSigned(t *testing.T, n int, serverCtl bool, signer events.Signer, extra ...func(id, dir string) []agent.Option) *rolloutFleet {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rs, err := (&ServerCmd{Data: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", NoRolloutController: !serverCtl,
		RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Start(ctx, &Globals{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	nc, err := nats.Connect(rs.Env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	f := &rolloutFleet{t: t, rs: rs, dir: dir, cl: api.NewClient(nc), natsF: "--nats=" + rs.Env.NATSURL,
		base: events.Manifest{Resources: []events.Resource{file("base", "/srv/base")}}, agents: map[string]*agent.Handle{}}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	for i := range n {
		id := fmt.Sprintf("pi-%03d", i)
		f.ids = append(f.ids, id)
		root := filepath.Join(dir, id, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		anc, err := nats.Connect(rs.Env.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		opts := []agent.Option{agent.WithLog(jsstore.NewLazy(anc)), agent.WithRoot(root), agent.WithStateDir(filepath.Join(dir, id, "state")),
			agent.WithLabels(map[string]string{"site": "lab"}), agent.WithManifestPoll(time.Second),
			agent.WithHeartbeatInterval(time.Second), agent.WithShutdownGrace(time.Second),
			agent.WithBackoff(time.Second, 4*time.Second), agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))}
		for _, x := range extra {
			opts = append(opts, x(id, filepath.Join(dir, id))...)
		}
		h, err := agent.Start(ctx, anc, id, opts...)
		if err != nil {
			t.Fatal(err)
		}
		f.agents[id] = h
		t.Cleanup(func() { _ = h.Stop(); anc.Close() })
		if _, err := events.Apply(ctx, rs.Env.Store, clock, id, f.base, "user:ops", signer); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range f.ids {
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 1 && ready(d) && len(d.Labels) > 0 })
	}
	return f
}

func ready(d projections.Device) bool {
	c, _ := d.Condition(projections.CondReady)
	return c.Status == projections.True
}

func (f *rolloutFleet) waitDevice(id string, ok func(projections.Device) bool) projections.Device {
	f.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		d, err := f.cl.Device(context.Background(), id)
		if err == nil && ok(d) {
			return d
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("device %s: not as expected within 90s: %+v %v", id, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// breakFile makes /etc unwritable on a device: a file where the directory
// should be, so a file resource under /etc fails there (a real failure of
// the real reconciler).
func (f *rolloutFleet) breakFile(id string) {
	if err := os.WriteFile(filepath.Join(f.dir, id, "root", "etc"), []byte("not a directory"), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

// start starts rollout id of a manifest writing /etc/motd with the CLI.
func (f *rolloutFleet) start(id string, extra ...string) {
	f.t.Helper()
	m := filepath.Join(f.dir, id+".yaml")
	if err := os.WriteFile(m, []byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"new\\n\", mode: \"0644\"}\n"), 0o644); err != nil {
		f.t.Fatal(err)
	}
	args := append([]string{"rollout", "start", "--id", id, "-f", m, "--selector", "site=lab", "--waves", "5%,25%,100%",
		"--max-failures", "2", "--wave-deadline", "3m"}, extra...)
	if out, code := replayCLI(f.t, append(args, f.natsF)...); code != 0 {
		f.t.Fatalf("rollout start: exit %d: %s", code, out)
	}
}

// controller runs one controller until the returned stop is called.
func (f *rolloutFleet) controller(opts ...rollouts.Option) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	nc, err := nats.Connect(f.rs.Env.NATSURL)
	if err != nil {
		f.t.Fatal(err)
	}
	ctl, err := rollouts.NewController(f.rs.Env.Store, rollouts.DevicesOf{Client: api.NewClient(nc)}, "user:rollout-controller", opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ctl.Run(ctx, 100*time.Millisecond, nil) }()
	return func() { cancel(); wg.Wait(); nc.Close() }
}

func (f *rolloutFleet) waitRollout(id string, ok func(*rollout.Rollout) bool) *rollout.Rollout {
	f.t.Helper()
	deadline := time.Now().Add(120 * time.Second)
	for {
		r, err := rollouts.Load(context.Background(), f.rs.Env.Store, id)
		if err == nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("rollout %s: not as expected within 120s: %+v %v", id, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// untouchedOutside checks that every device not in wave is still on
// generation 1: the rollout never gave it the new generation.
func (f *rolloutFleet) untouchedOutside(wave []string) {
	f.t.Helper()
	for _, id := range f.ids {
		if slices.Contains(wave, id) {
			continue
		}
		lm, err := f.rs.Env.Store.LastManifest(context.Background(), id)
		if err != nil || lm.Generation != 1 {
			f.t.Fatalf("%s outside the wave: last manifest %+v, %v; want generation 1", id, lm, err)
		}
	}
}

// decisions counts the events of a rollout by type, and checks the log
// (replay --verify with its gate check).
func (f *rolloutFleet) decisions(id string) map[string]int {
	f.t.Helper()
	ctx := context.Background()
	out := map[string]int{}
	for s, err := range f.rs.Env.Store.Read(ctx, events.Filter{SubjectFilters: []string{events.RolloutSubject(id), events.TargetedSubject("*", id)}}) {
		if err != nil {
			f.t.Fatal(err)
		}
		out[s.Type]++
	}
	rep, err := verifyWithGates(f.rs.Env.Store.Read(ctx, events.Filter{}), true) // every gate decision re-derived too
	if err != nil {
		f.t.Fatal(err)
	}
	if !rep.OK() {
		f.t.Fatalf("replay --verify: %v", rep.Violations)
	}
	return out
}

// TestRolloutPausesOnSpentBudgetAndNoDeviceOutsideTheFirstWave: 41 real
// agents, waves 5%,25%,100% (3, 8, 30 devices), a budget of 2 failures,
// the 3 devices of the first wave made to fail: the rollout pauses, and no
// device outside the first wave ever gets a new generation. Two
// controllers run at once from the start, and one of them is killed
// (its goroutine stopped) mid-wave and a third started from the log: every
// decision is on the log exactly once, each device targeted once, and
// replaying the log (replay --verify, which recomputes every wave's
// membership) finds it clean.
func TestRolloutPausesOnSpentBudgetAndNoDeviceOutsideTheFirstWave(t *testing.T) {
	if testing.Short() {
		t.Skip("41 agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 41, false)
	plan := rollout.Plan("R1", f.ids, []string{"5%", "25%", "100%"})
	is.Equal([]int{len(plan[0]), len(plan[1]), len(plan[2])}, []int{3, 8, 30})
	for _, id := range plan[0] {
		f.breakFile(id)
	}
	f.start("R1")
	a, b := f.controller(), f.controller()
	f.waitRollout("R1", func(r *rollout.Rollout) bool { return len(r.Targeted) > 0 })
	a() // killed mid-wave
	c := f.controller()
	r := f.waitRollout("R1", func(r *rollout.Rollout) bool { return r.State == rollout.Paused })
	b()
	c()
	is.Equal(len(r.Failed), 3)
	is.True(r.Current == 0 && !r.Passed[0])
	is.Equal(f.decisions("R1"), map[string]int{events.TypeRolloutStarted: 1, events.TypeWaveStarted: 1, events.TypeDeviceTargeted: 3,
		events.TypeWaveFailed: 1, events.TypeRolloutPaused: 1})
	for _, id := range f.ids {
		lm, err := f.rs.Env.Store.LastManifest(context.Background(), id)
		is.NoErr(err)
		if slices.Contains(plan[0], id) {
			is.Equal(lm.Generation, int64(2))
		} else {
			is.Equal(lm.Generation, int64(1)) // outside the first wave: never the new generation
		}
	}
	out, code := replayCLI(t, "rollout", "status", "R1", f.natsF)
	is.Equal(code, 0)
	t.Log(out)
}

// TestRolloutRollsBackEveryDeviceItChanged: 100 real agents, waves
// 5%,25%,100% (5, 20, 75), a budget of 2, 3 of the first wave made to
// fail, --on-failure rollback: every device the rollout changed gets a new
// generation (3) carrying the manifest it had before; all five are Ready
// on it again (the three broken ones too: their /etc/motd is already
// absent); nothing outside the
// first wave was touched; the log says why.
func TestRolloutRollsBackEveryDeviceItChanged(t *testing.T) {
	if testing.Short() {
		t.Skip("100 agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 100, false)
	plan := rollout.Plan("R2", f.ids, []string{"5%", "25%", "100%"})
	is.Equal(len(plan[0]), 5)
	broken := plan[0][:3]
	for _, id := range broken {
		f.breakFile(id)
	}
	f.start("R2", "--on-failure", "rollback")
	stop := f.controller()
	r := f.waitRollout("R2", func(r *rollout.Rollout) bool { return r.State == rollout.RolledBack })
	stop()
	is.True(strings.Contains(r.Reason, "3 devices failed in wave 0"))
	for _, id := range plan[0] {
		lm, err := f.rs.Env.Store.LastManifest(context.Background(), id)
		is.NoErr(err)
		is.Equal(lm.Generation, int64(3))
		p, _ := lm.Payload()
		is.Equal(p.(*events.ManifestApplied).Digest, f.base.Digest()) // the manifest it had before
		// the broken ones too: removing /etc/motd while /etc is a file is already absent (ENOTDIR)
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 3 && ready(d) })
	}
	f.untouchedOutside(plan[0])
	is.Equal(f.decisions("R2"), map[string]int{events.TypeRolloutStarted: 1, events.TypeWaveStarted: 1, events.TypeDeviceTargeted: 5,
		events.TypeWaveFailed: 1, events.TypeRolloutRolledBack: 1})
}

// TestRolloutSucceedsInWaveOrderDrivenByTheServer: the controller inside
// 'fleet server' drives a rollout to every matching device (and none
// other), wave after wave: every device of a wave is targeted before any
// of the next. With a soak of an hour, each wave waits until an operator
// promotes it ('fleet rollout promote'); pause holds it, resume goes on;
// a device labelled to match during the rollout joins the wave in progress.
func TestRolloutSucceedsInWaveOrderDrivenByTheServer(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 12, true)
	_, code := replayCLI(t, "label", "pi-011", "site=elsewhere", f.natsF)
	is.Equal(code, 0)
	f.waitDevice("pi-011", func(d projections.Device) bool { return d.Labels["site"] == "elsewhere" })
	f.start("R3", "--waves", "1,50%,100%", "--soak", "1h")
	ids := f.ids[:11]
	plan := rollout.Plan("R3", ids, []string{"1", "50%", "100%"})
	for w := range plan {
		r := f.waitRollout("R3", func(r *rollout.Rollout) bool {
			if r.Current != w {
				return false
			}
			for _, d := range plan[w] {
				if r.Targeted[d] == nil {
					return false
				}
			}
			return true
		})
		is.True(!r.Passed[w]) // the soak holds it
		for _, d := range plan[w] {
			f.waitDevice(d, func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })
		}
		if w == 1 {
			_, code = replayCLI(t, "rollout", "pause", "R3", "--reason", "lunch", f.natsF)
			is.Equal(code, 0)
			_, code = replayCLI(t, "rollout", "promote", "R3", f.natsF) // promote works on a paused rollout too
			is.Equal(code, 0)
			time.Sleep(300 * time.Millisecond)
			r = f.waitRollout("R3", func(r *rollout.Rollout) bool { return r.State == rollout.Paused })
			is.Equal(r.Current, 1) // paused: no next wave
			// pi-011 starts to match while the rollout is paused: it joins the wave in progress after resume
			_, code = replayCLI(t, "label", "pi-011", "site=lab", f.natsF)
			is.Equal(code, 0)
			f.waitDevice("pi-011", func(d projections.Device) bool { return d.Labels["site"] == "lab" })
			_, code = replayCLI(t, "rollout", "resume", "R3", f.natsF)
			is.Equal(code, 0)
			continue
		}
		out, code := replayCLI(t, "rollout", "promote", "R3", "-o", "json", f.natsF)
		is.Equal(code, 0)
		is.True(strings.Contains(out, events.TypeWavePassed))
	}
	r := f.waitRollout("R3", func(r *rollout.Rollout) bool { return r.State == rollout.Succeeded })
	is.Equal(len(r.Targeted), 12)
	is.True(r.Targeted["pi-011"].Joined)
	is.Equal(r.Targeted["pi-011"].Wave, 2) // the wave in progress after resume (wave 1 was promoted while paused)
	f.waitDevice("pi-011", func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })
	// wave order on the log
	last := -1
	for s, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{SubjectFilters: []string{events.TargetedSubject("*", "R3")}}) {
		is.NoErr(err)
		p, _ := s.Payload()
		w := p.(*events.DeviceTargeted).Wave
		is.True(w >= last)
		last = w
	}
	is.Equal(f.decisions("R3")[events.TypeWavePassed], 3)
	out, code := replayCLI(t, "rollout", "list", "-o", "json", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, `"state": "Succeeded"`))
	_, code = replayCLI(t, "rollout", "abort", "R3", f.natsF) // ended: refused, naming the rule
	is.Equal(code, 2)
}

// TestRolloutPausesInconclusiveWhenADeviceIsOfflinePastTheDeadline: a
// device of the first wave whose agent stops before the rollout reaches it
// goes Stale (heartbeat TTL 10 s); past the wave deadline the rollout
// pauses as inconclusive, naming the offline device and the reason, and
// the budget is not burnt (no WaveFailed); nothing outside the wave moved.
func TestRolloutPausesInconclusiveWhenADeviceIsOfflinePastTheDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a heartbeat to expire")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 10, false)
	plan := rollout.Plan("R5", f.ids, []string{"30%", "100%"})
	gone := plan[0][0]
	is.NoErr(f.agents[gone].Stop())
	f.waitDevice(gone, func(d projections.Device) bool {
		c, _ := d.Condition(projections.CondStale)
		return c.Status == projections.True
	})
	m := filepath.Join(f.dir, "r5.yaml")
	is.NoErr(os.WriteFile(m, []byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"new\\n\", mode: \"0644\"}\n"), 0o644))
	_, code := replayCLI(t, "rollout", "start", "--id", "R5", "-f", m, "--selector", "site=lab", "--waves", "30%,100%",
		"--wave-deadline", "2s", f.natsF)
	is.Equal(code, 0)
	stop := f.controller()
	r := f.waitRollout("R5", func(r *rollout.Rollout) bool { return r.State == rollout.Paused })
	stop()
	is.Equal(r.Offline, []string{gone})
	is.True(strings.Contains(r.Reason, "past its deadline"))
	is.Equal(f.decisions("R5")[events.TypeWaveFailed], 0)
	// replay re-derives the pause: an export of the log as it is verifies
	// clean; one whose pause names a device of the wave that was Ready at
	// the new generation offline is a gate violation naming it.
	_, code = f.exportTampered("R5", events.TypeRolloutPaused, func(*events.Event, events.Payload) {})
	is.Equal(code, 0)
	var ready string
	for _, id := range plan[0] {
		if id != gone {
			ready = id
			break
		}
	}
	is.True(ready != "")
	tampered, code := f.exportTampered("R5", events.TypeRolloutPaused, func(_ *events.Event, p events.Payload) {
		p.(*events.RolloutPaused).Offline = []string{gone, ready}
	})
	is.Equal(code, 1)
	is.True(strings.Contains(tampered, "names "+ready+" offline, but it was Ready"))
	out, code := replayCLI(t, "rollout", "status", "R5", "-o", "json", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, gone))
	for _, id := range plan[1] {
		lm, err := f.rs.Env.Store.LastManifest(context.Background(), id)
		is.NoErr(err)
		is.Equal(lm.Generation, int64(1))
	}
}
