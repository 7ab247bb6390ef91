package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/rollout"
)

// RolloutGate is what the rollout-gate run measured: a fleet-wide rollout
// driven by the `fleet server` child's own rollout controller, waves Waves
// with a budget of MaxFailures, Failing devices of the first wave made to
// fail (their /etc is a file, so the rollout's /etc/motd cannot be
// written: a real failure of the real file reconciler).
type RolloutGate struct {
	Devices     int      `json:"devices"`
	Waves       []string `json:"waves"`
	WaveSizes   []int    `json:"waveSizes"`
	MaxFailures int      `json:"maxFailures"`
	Failing     []string `json:"failing"`
	State       string   `json:"state"`
	Reason      string   `json:"reason"`
	// LastFailure is when the last of the Failing devices reported its
	// first Failed (its agent's event time); Paused the RolloutPaused's.
	LastFailure time.Time     `json:"lastFailure"`
	Paused      time.Time     `json:"paused"`
	PauseAfter  time.Duration `json:"pauseAfterLastFailure"`
	StartToStop time.Duration `json:"startToPaused"`
	// Targeted counts DeviceTargeted; OutsideFirstWave those (and the
	// manifests) that reached a device outside the first wave: must be 0.
	Targeted         int  `json:"targeted"`
	OutsideFirstWave int  `json:"outsideFirstWave"`
	GateChecked      int  `json:"gateDecisionsChecked"`
	VerifyOK         bool `json:"verifyOK"`
	Events           int  `json:"events"`
	// RawCAS is the raw JetStream figure of the same run: as many bare
	// compare-and-set publishes, one after another, as the first wave's
	// DeviceTargeted, to a scratch stream on the same server (deleted
	// after), right after the rollout paused.
	RawCAS time.Duration `json:"rawCAS"`
}

// rawCAS publishes n messages one after another, each expecting its own
// subject empty (as DeviceTargeted does), to a scratch stream with the
// log's settings, and returns how long they took.
func (s *sim) rawCAS(ctx context.Context, n int) (time.Duration, error) {
	str, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return 0, err
	}
	info, err := str.Info(ctx)
	if err != nil {
		return 0, err
	}
	c := info.Config
	c.Name, c.Subjects, c.Description = "SIMGATEFLOOR", []string{"simgatefloor.>"}, "fleet sim: raw CAS floor (deleted after the run)"
	c.DenyDelete, c.DenyPurge = false, false
	if _, err := s.js.CreateStream(ctx, c); err != nil {
		return 0, fmt.Errorf("raw CAS stream: %w", err)
	}
	defer func() { _ = s.js.DeleteStream(context.Background(), "SIMGATEFLOOR") }()
	body := make([]byte, 300)
	start := time.Now()
	for i := range n {
		if _, err := s.js.Publish(ctx, fmt.Sprintf("simgatefloor.d%05d", i), body, jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// RunRolloutGate starts cfg.Devices agents (cfg.Scenario is not used), a
// rollout over all of them in waves 5%,25%,100% with a budget of 2, and
// makes failing devices of its first wave fail; it waits (at most cfg.For)
// for the rollout to pause and measures how long after the last failure it
// did, checks that nothing outside the first wave was targeted, and
// verifies the log with its gate decisions (replay.Verify and
// rollouts.GateChecker).
func RunRolloutGate(ctx context.Context, cfg Config, failing int) (*RolloutGate, error) {
	cfg.Scenario = Idle // check wants one; the run is this file's
	if cfg.Settle == 0 {
		cfg.Settle = 5 * time.Second
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &sim{cfg: cfg, log: func(string, ...any) {}, agentLog: newLogCounter()}
	if cfg.Log != nil {
		s.log = func(f string, a ...any) { fmt.Fprintf(cfg.Log, "fleet sim: "+f+"\n", a...) }
	}
	raiseFileLimit(cfg.Devices)
	if err := s.setup(ctx); err != nil {
		s.teardown()
		return nil, err
	}
	defer s.teardown()
	const id = "SIMGATE"
	waves := []string{"5%", "25%", "100%"}
	rep := &RolloutGate{Devices: cfg.Devices, Waves: waves, MaxFailures: 2}
	deadline := time.Now().Add(cfg.For)
	cl := api.NewClient(s.nc)
	var ids []string
	for {
		ds, _, _, err := cl.EachSummary(ctx, api.ListOptions{Selector: "sim=true", Limit: api.MaxLimit}, 0)
		if err == nil && len(ds) == cfg.Devices {
			for _, d := range ds {
				ids = append(ids, d.Device)
			}
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("sim: %d of %d devices registered with their labels within %s (%v)", len(ds), cfg.Devices, cfg.For, err)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return rep, err
		}
	}
	slices.Sort(ids)
	s.log("%d devices registered", len(ids))
	plan := rollout.Plan(id, ids, waves)
	for _, w := range plan {
		rep.WaveSizes = append(rep.WaveSizes, len(w))
	}
	if failing > len(plan[0]) {
		return rep, fmt.Errorf("%w: %d failing devices: the first wave has %d", events.ErrInvalid, failing, len(plan[0]))
	}
	rep.Failing = slices.Clone(plan[0][:failing])
	for _, d := range s.devs {
		if slices.Contains(rep.Failing, d.id) {
			if err := os.WriteFile(filepath.Join(d.root, "etc"), []byte("not a directory"), 0o644); err != nil {
				return rep, err
			}
		}
	}
	m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "rolled out\n", Mode: "0644"}}}}
	spec := &events.RolloutStarted{Selector: "sim=true", Manifest: m, Digest: m.Digest(), Waves: waves, Devices: ids,
		MaxFailures: rep.MaxFailures, WaveDeadline: cfg.For, OnFailure: events.OnFailurePause}
	began := time.Now()
	if _, err := rollouts.Decide(ctx, s.st, s.clock, &rollout.Rollout{ID: id}, "user:sim", spec); err != nil {
		return rep, err
	}
	s.log("rollout %s started: waves %v", id, rep.WaveSizes)
	var r *rollout.Rollout
	for {
		var err error
		r, err = rollouts.Load(ctx, s.st, id)
		if err == nil && rollout.Terminal(r.State) || err == nil && r.State == rollout.Paused {
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("sim: rollout not paused within %s: %+v %v", cfg.For, r, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return rep, err
		}
	}
	rep.StartToStop = time.Since(began)
	rep.State, rep.Reason, rep.Targeted = r.State, r.Reason, len(r.Targeted)
	for s2, err := range s.st.Read(ctx, events.Filter{SubjectFilters: []string{events.RolloutSubject(id)}, Types: []string{events.TypeRolloutPaused}}) {
		if err == nil {
			rep.Paused = s2.At
		}
	}
	for _, dev := range rep.Failing {
		for e, err := range s.st.Read(ctx, events.Filter{Device: dev, Types: []string{events.TypeStatusChanged}}) {
			if err != nil {
				continue
			}
			if p, err := e.Payload(); err == nil && p.(*events.StatusChanged).To == "Failed" {
				if e.At.After(rep.LastFailure) {
					rep.LastFailure = e.At
				}
				break
			}
		}
	}
	rep.PauseAfter = rep.Paused.Sub(rep.LastFailure)
	for _, t := range r.Targeted {
		if t.Wave != 0 || !slices.Contains(plan[0], t.Device) {
			rep.OutsideFirstWave++
		}
	}
	for _, dev := range ids {
		if slices.Contains(plan[0], dev) {
			continue
		}
		if _, err := s.st.LastManifest(ctx, dev); !errors.Is(err, events.ErrNotFound) {
			rep.OutsideFirstWave++
		}
	}
	g := rollouts.NewGateChecker()
	vr, err := replay.Verify(func(yield func(events.Stored, error) bool) {
		for e, err := range s.st.Read(ctx, events.Filter{}) {
			if err == nil {
				g.Add(e)
			}
			if !yield(e, err) {
				return
			}
		}
	}, true)
	if err != nil {
		return rep, err
	}
	rep.Events, rep.GateChecked = vr.Events, g.Checked()
	rep.VerifyOK = vr.OK() && len(g.Mismatches()) == 0
	if !rep.VerifyOK {
		return rep, fmt.Errorf("sim: replay --verify: %v %v", vr.Violations, g.Mismatches())
	}
	if rep.RawCAS, err = s.rawCAS(ctx, len(plan[0])); err != nil {
		return rep, err
	}
	s.log("rollout %s %s %s after the last failure (%s after its start); %d targeted, %d outside the first wave",
		id, r.State, rep.PauseAfter.Round(time.Millisecond), rep.StartToStop.Round(time.Millisecond), rep.Targeted, rep.OutsideFirstWave)
	s.log("raw JetStream, same server: %d compare-and-set publishes one after another in %s", len(plan[0]), rep.RawCAS.Round(time.Millisecond))
	return rep, nil
}
