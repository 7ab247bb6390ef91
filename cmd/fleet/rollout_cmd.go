package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/rollout"
)

func init() {
	register("rollout", "Roll a manifest out to the devices a selector matches, in waves gated on what they report.", "Control plane", &RolloutCmd{})
}

// RolloutCmd is `fleet rollout`.
type RolloutCmd struct {
	Start      RolloutStartCmd      `cmd:"" help:"Start a rollout."`
	Status     RolloutStatusCmd     `cmd:"" help:"Show a rollout: state, waves, devices per state, budget, what it waits on."`
	List       RolloutListCmd       `cmd:"" help:"List every rollout with its state."`
	Pause      RolloutPauseCmd      `cmd:"" help:"Pause a running rollout."`
	Resume     RolloutResumeCmd     `cmd:"" help:"Resume a paused rollout."`
	Abort      RolloutAbortCmd      `cmd:"" help:"Stop a rollout for good; devices keep what they have."`
	Promote    RolloutPromoteCmd    `cmd:"" help:"Pass the wave in progress now, skipping its soak."`
	Controller RolloutControllerCmd `cmd:"" help:"Run the rollout controller alone (fleet server runs one too)."`
}

// Help is shown by `fleet rollout --help`.
func (c *RolloutCmd) Help() string {
	return `A rollout is on the log: its decisions (RolloutStarted, WaveStarted, WavePassed,
WaveFailed, RolloutPaused, RolloutResumed, RolloutAborted, RolloutRolledBack,
RolloutSucceeded, RolloutSuperseded) on fleet.@rollout.ID, written
compare-and-set, and DeviceTargeted on each device's fleet.DEVICE.rollout.ID.
Which wave a device is in is a hash of the rollout id and the device id;
a device that starts to match during the rollout joins the wave in progress.
A wave passes when every device is at the rollout's generation, Ready and
healthy for --soak; a resource that turns Unhealthy (a probe, a liveness
restart, a crash loop) counts as failed. 'fleet replay --verify' re-derives
every gate decision from the device events before it. 'fleet explain DEVICE
RESOURCE' says when a rollout holds a device; the HTTP API is /api/rollouts
and the page /static/rollouts.html.

Examples:
  fleet rollout start -f kiosk.yaml --selector 'site=lab' --waves 5%,25%,100% --max-failures 2 --soak 2m
  fleet rollout start -f kiosk.yaml --selector 'role=sign' --on-failure rollback --max-per-minute 30
  fleet rollout list                                # every rollout, newest first
  fleet rollout status 01KQ... -o json
  fleet rollout status 01KQ... --at 5s              # as it was 5 s ago, from the log (2h; RFC 3339)
  fleet rollout controller --key controller.key     # sign what it writes; agents --trust its public key
  fleet rollout pause 01KQ...
  fleet rollout resume 01KQ...
  fleet rollout promote 01KQ...                     # pass the wave in progress now
  fleet rollout abort 01KQ...                       # for good; devices keep what they have`
}

// RolloutStartCmd is `fleet rollout start`.
type RolloutStartCmd struct {
	File              string        `short:"f" required:"" placeholder:"FILE" help:"Manifest file, YAML or JSON."`
	Selector          string        `short:"l" required:"" placeholder:"SELECTOR" help:"Devices whose labels match (Kubernetes syntax)."`
	Waves             string        `default:"1,10%,50%,100%" help:"Cumulative wave sizes: counts or percents, the last 100%."`
	MaxFailures       int           `default:"0" help:"Failed devices the rollout tolerates; one more spends the budget."`
	MaxFailurePercent float64       `help:"Or at most this percent of the devices targeted so far (0: not used)."`
	Soak              time.Duration `default:"0s" help:"How long every device of a wave stays Ready before the wave passes."`
	WaveDeadline      time.Duration `default:"10m" help:"A wave not passed by then pauses as inconclusive, with the reason (offline devices are counted apart)."`
	OnFailure         string        `enum:"pause,rollback" default:"pause" help:"When the budget is spent: pause, or roll back every device the rollout changed."`
	MaxPerMinute      int           `help:"Target at most this many devices a minute, paced evenly from the wave's start or the last resume (0: no limit)."`
	ID                string        `placeholder:"ID" help:"Rollout id (default: a new ULID)."`
	Output
}

// Run appends RolloutStarted, superseding rollouts on overlapping devices.
func (c *RolloutStartCmd) Run(ctx context.Context, g *Globals) error {
	ws := strings.Split(c.Waves, ",")
	if err := rollout.ParseWaves(ws); err != nil {
		return fmt.Errorf("--waves: %w", err)
	}
	if _, err := projections.ParseSelector(c.Selector); err != nil {
		return fmt.Errorf("--selector: %w", err)
	}
	if c.MaxFailures < 0 || c.MaxFailurePercent < 0 || c.MaxFailurePercent > 100 || c.MaxPerMinute < 0 || c.Soak < 0 || c.WaveDeadline < 0 {
		return fmt.Errorf("%w: --max-failures, --max-failure-percent (0 to 100), --max-per-minute, --soak, --wave-deadline: must not be negative", events.ErrInvalid)
	}
	if c.ID == "" {
		c.ID = ulid.Make().String()
	}
	if err := events.CheckID("--id", c.ID); err != nil {
		return err
	}
	actor, err := operator()
	if err != nil {
		return err
	}
	m, err := loadManifest(c.File)
	if err != nil {
		return err
	}
	nc, st, err := g.Store(ctx, "fleet-rollout")
	if err != nil {
		return err
	}
	defer nc.Close()
	ds, err := selectedDevices(ctx, nc, c.Selector)
	if err != nil {
		return err
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.Device)
	}
	slices.Sort(ids)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	spec := &events.RolloutStarted{Selector: c.Selector, Manifest: m, Digest: m.Digest(), Waves: ws, Devices: ids,
		MaxFailures: c.MaxFailures, MaxFailurePercent: c.MaxFailurePercent, Soak: c.Soak, WaveDeadline: c.WaveDeadline,
		OnFailure: c.OnFailure, MaxPerMinute: c.MaxPerMinute}
	if _, err := rollouts.Decide(ctx, st, clock, &rollout.Rollout{ID: c.ID}, actor, spec); err != nil {
		if errors.Is(err, events.ErrConflict) {
			return fmt.Errorf("rollout %s already exists: %w; pick another --id", c.ID, err)
		}
		return err
	}
	superseded, err := supersede(ctx, st, clock, actor, c.ID, ids)
	if err != nil {
		return err
	}
	if c.JSON() {
		return printJSON(map[string]any{"id": c.ID, "devices": len(ids), "waves": rollout.Plan(c.ID, ids, ws), "superseded": superseded})
	}
	fmt.Printf("rollout %s started: %d devices in %d waves (%s); follow it with 'fleet rollout status %s'\n", c.ID, len(ids), len(ws), c.Waves, c.ID)
	for _, s := range superseded {
		fmt.Printf("rollout %s superseded (overlapping devices)\n", s)
	}
	return nil
}

// supersede ends every rollout still going whose devices overlap ids.
func supersede(ctx context.Context, st rollouts.Log, clock *events.Clock, actor, id string, ids []string) ([]string, error) {
	all, err := rollouts.List(ctx, st)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, other := range all {
		if other == id {
			continue
		}
		r, err := rollouts.Load(ctx, st, other)
		if err != nil || rollout.Terminal(r.State) {
			continue
		}
		if !slices.ContainsFunc(r.Spec.Devices, func(d string) bool { _, ok := slices.BinarySearch(ids, d); return ok }) {
			continue
		}
		if _, err := rollouts.Decide(ctx, st, clock, r, actor, &events.RolloutSuperseded{By: id}); err != nil {
			return out, fmt.Errorf("supersede rollout %s: %w", other, err)
		}
		out = append(out, other)
	}
	return out, nil
}

// RolloutStatusCmd is `fleet rollout status ID`.
type RolloutStatusCmd struct {
	ID  string  `arg:"" placeholder:"ID" help:"Rollout id."`
	At  string  `placeholder:"TIME" help:"Show the rollout as it was then (event time), the wave in progress judged with its devices as they were then: RFC 3339 or a duration ago like 2h; default now."`
	Seq seqFlag `placeholder:"N" help:"Show the rollout as of stream sequence N instead of a time."`
	Output
}

// Run prints the rollout.
func (c *RolloutStatusCmd) Run(ctx context.Context, g *Globals) error {
	nc, st, err := g.Store(ctx, "fleet-rollout")
	if err != nil {
		return err
	}
	defer nc.Close()
	at, err := replay.ParseTime(c.At, time.Now())
	if err != nil {
		return usagef("--at: %v", err)
	}
	if !at.IsZero() && c.Seq > 0 {
		return usagef("--at and --seq: pick one")
	}
	x := &rollouts.Reader{Log: st, Devices: rollouts.DevicesOf{Client: api.NewClient(nc)}, Past: rollouts.PastOf{Conn: nc, Log: st}}
	v, err := x.Get(ctx, c.ID, at, uint64(c.Seq))
	if err != nil {
		return err
	}
	r := v.Rollout
	if c.JSON() {
		return printJSON(v) // the rollout, its waves' counts and gate (api.RolloutView, as GET /api/rollouts/ID)
	}
	if !at.IsZero() {
		fmt.Printf("as of %s (time travel)\n", at.UTC().Format(time.RFC3339))
	}
	fmt.Printf("rollout %s  %s  selector %q  wave %d of %d  targeted %d of %d  budget %s\n", r.ID, r.State, r.Spec.Selector,
		r.Current+1, len(r.Waves), len(r.Targeted), len(r.Spec.Devices), budgetOf(r))
	if r.Reason != "" {
		fmt.Printf("reason: %s\n", r.Reason)
	}
	if v.WaitingOn != "" {
		fmt.Printf("waiting on %s\n", v.WaitingOn)
	}
	var rows [][]string
	for _, w := range v.WaveGates {
		rows = append(rows, []string{fmt.Sprint(w.Wave), w.Size, fmt.Sprint(w.Devices), fmt.Sprint(w.Targeted), w.State,
			fmt.Sprint(w.Passed), fmt.Sprint(w.Failed), fmt.Sprint(w.Waiting), fmt.Sprint(w.Offline)})
	}
	return table(os.Stdout, []string{"WAVE", "SIZE", "DEVICES", "TARGETED", "STATE", "PASSED", "FAILED", "WAITING", "OFFLINE"}, rows)
}

func budgetOf(r *rollout.Rollout) string {
	s := fmt.Sprintf("%d failed of at most %d", len(r.Failed), r.Spec.MaxFailures)
	if r.Spec.MaxFailurePercent > 0 {
		s += fmt.Sprintf(" (or %g%%)", r.Spec.MaxFailurePercent)
	}
	return s
}

// RolloutListCmd is `fleet rollout list`.
type RolloutListCmd struct {
	Output
}

// Run lists rollouts.
func (c *RolloutListCmd) Run(ctx context.Context, g *Globals) error {
	nc, st, err := g.Store(ctx, "fleet-rollout")
	if err != nil {
		return err
	}
	defer nc.Close()
	ids, err := rollouts.List(ctx, st)
	if err != nil {
		return err
	}
	var rs []*rollout.Rollout
	var rows [][]string
	for _, id := range ids {
		r, err := rollouts.Load(ctx, st, id)
		if err != nil {
			return err
		}
		rs = append(rs, r)
		rows = append(rows, []string{r.ID, r.State, r.Spec.Selector, fmt.Sprintf("%d/%d", r.Current+1, len(r.Waves)),
			fmt.Sprintf("%d/%d", len(r.Targeted), len(r.Spec.Devices)), r.StartedAt.UTC().Format(time.RFC3339)})
	}
	if c.JSON() {
		if rs == nil {
			rs = []*rollout.Rollout{}
		}
		return printJSON(rs)
	}
	if len(rows) == 0 {
		fmt.Println("no rollouts yet (start one with 'fleet rollout start')")
		return nil
	}
	return table(os.Stdout, []string{"ID", "STATE", "SELECTOR", "WAVE", "TARGETED", "STARTED"}, rows)
}

// RolloutDecision is what `fleet rollout pause|resume|abort|promote ID` take.
type RolloutDecision struct {
	ID     string `arg:"" placeholder:"ID" help:"Rollout id."`
	Reason string `help:"Why (recorded in the event)."`
	Output
}

// RolloutPauseCmd is `fleet rollout pause ID`.
type RolloutPauseCmd struct {
	RolloutDecision `embed:""`
}

// RolloutResumeCmd is `fleet rollout resume ID`.
type RolloutResumeCmd struct {
	RolloutDecision `embed:""`
}

// RolloutAbortCmd is `fleet rollout abort ID`.
type RolloutAbortCmd struct {
	RolloutDecision `embed:""`
}

// RolloutPromoteCmd is `fleet rollout promote ID`.
type RolloutPromoteCmd struct {
	RolloutDecision `embed:""`
}

// Run pauses.
func (c *RolloutPauseCmd) Run(ctx context.Context, g *Globals) error {
	return c.decide(ctx, g, "pause")
}

// Run resumes.
func (c *RolloutResumeCmd) Run(ctx context.Context, g *Globals) error {
	return c.decide(ctx, g, "resume")
}

// Run aborts.
func (c *RolloutAbortCmd) Run(ctx context.Context, g *Globals) error {
	return c.decide(ctx, g, "abort")
}

// Run promotes.
func (c *RolloutPromoteCmd) Run(ctx context.Context, g *Globals) error {
	return c.decide(ctx, g, "promote")
}

// decide appends the operator's decision verb.
func (c *RolloutDecision) decide(ctx context.Context, g *Globals, verb string) error {
	actor, err := operator()
	if err != nil {
		return err
	}
	nc, st, err := g.Store(ctx, "fleet-rollout")
	if err != nil {
		return err
	}
	defer nc.Close()
	r, err := rollouts.Load(ctx, st, c.ID)
	if err != nil {
		return err
	}
	var p events.Payload
	switch verb {
	case "pause":
		p = &events.RolloutPaused{Reason: "operator: " + c.Reason}
	case "resume":
		p = &events.RolloutResumed{Reason: c.Reason}
	case "abort":
		p = &events.RolloutAborted{Reason: c.Reason}
	case "promote":
		if r.Current < 0 || r.Passed[r.Current] {
			return fmt.Errorf("%w: rollout %s: no wave in progress to promote", events.ErrInvalid, c.ID)
		}
		p = &events.WavePassed{Wave: r.Current, Promoted: true}
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	seq, err := rollouts.Decide(ctx, st, clock, r, actor, p)
	if err != nil {
		if errors.Is(err, events.ErrConflict) {
			return fmt.Errorf("rollout %s changed while you decided (the controller or another operator): %w; look at 'fleet rollout status %s' and retry", c.ID, err, c.ID)
		}
		return usageError{err}
	}
	if c.JSON() {
		return printJSON(map[string]any{"id": c.ID, "decision": p.EventType(), "seq": seq})
	}
	fmt.Printf("rollout %s: %s (sequence %d)\n", c.ID, p.EventType(), seq)
	return nil
}

// RolloutControllerCmd is `fleet rollout controller`.
type RolloutControllerCmd struct {
	Interval time.Duration `default:"1s" help:"How often every rollout is stepped."`
	Key      string        `env:"FLEET_ROLLOUT_KEY" placeholder:"FILE" help:"Sign every manifest the controller writes (targets and rollbacks) with this ed25519 key of its own (from 'fleet key new'); give its public key to agents with --trust."`
}

// Run drives rollouts until interrupted.
func (c *RolloutControllerCmd) Run(ctx context.Context, g *Globals) error {
	nc, st, err := g.Store(ctx, "fleet-rollout-controller")
	if err != nil {
		return err
	}
	defer nc.Close()
	opts, err := controllerKey(c.Key)
	if err != nil {
		return err
	}
	ctl, err := rollouts.NewController(st, rollouts.DevicesOf{Client: api.NewClient(nc)}, "user:rollout-controller", opts...)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctl.Run(ctx, c.Interval, func(err error) { log.Warn("rollout step", "err", err) })
	return nil
}
