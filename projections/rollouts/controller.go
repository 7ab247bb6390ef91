package rollouts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/rollout"
)

// Devices is what the controller reads of the device read models
// (api.Client and DevicesOf have it).
type Devices interface {
	// Device returns the read model with its Stale condition;
	// events.ErrNotFound for a device the service does not know.
	Device(ctx context.Context, id string) (projections.Device, error)
}

// Matcher is an optional capability of Devices: the ids of the devices
// whose labels match a selector now (api.Client has it as DeviceIDs). With
// it, a device that starts to match during a rollout joins the wave in
// progress (rollout.JoinWave).
type Matcher interface {
	Matching(ctx context.Context, selector string) ([]string, error)
}

// Controller drives rollouts. Every decision is an event appended
// compare-and-set on the rollout's subject; a lost race (another
// controller) ends the step, and the next step reads the log again. Safe
// for one goroutine; run as many controllers as you like, one per process.
type Controller struct {
	log     Log
	devices Devices
	clock   *events.Clock
	actor   string
	now     func() time.Time
	signer  events.Signer
}

// Option configures a Controller.
type Option func(*Controller)

// WithSigner has the controller sign every manifest it writes (a rollout's
// manifest to each device it targets, and each rollback) with its own
// key. A signature covers a device and a generation (events.SignedStatement),
// which are known only when the controller writes, so an operator cannot
// sign them ahead and the operator's private key never goes to a server:
// the controller signs with a key of its own, whose key id each
// ManifestApplied records, and that RolloutRolledBack declares; agents
// started with --trust trust it beside the operators' keys. Without a
// signer its manifests are unsigned (an agent with --trust rejects them,
// ManifestRejected, which the gate counts as failed), and a rollback's
// reason says so.
func WithSigner(s events.Signer) Option { return func(c *Controller) { c.signer = s } }

// NewController returns a controller writing as actor (user:NAME).
func NewController(l Log, d Devices, actor string, opts ...Option) (*Controller, error) {
	if err := events.CheckActor(actor); err != nil {
		return nil, err
	}
	clock, err := events.NewClock(events.ClockState{}, nil)
	if err != nil {
		return nil, err
	}
	c := &Controller{log: l, devices: d, clock: clock, actor: actor, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// Run steps every rollout that has not ended, every interval, until ctx
// ends. Errors of one step are reported to report (may be nil) and the
// loop goes on.
func (c *Controller) Run(ctx context.Context, interval time.Duration, report func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	ended := map[string]bool{} // an ended rollout stays ended: not read again (each read is a consumer on the log)
	for {
		ids, err := List(ctx, c.log)
		if err == nil {
			for _, id := range ids {
				if ended[id] {
					continue
				}
				done, err := c.step(ctx, id)
				if err != nil && !errors.Is(err, events.ErrConflict) && report != nil && ctx.Err() == nil {
					report(err)
				}
				ended[id] = done
			}
		} else if report != nil && ctx.Err() == nil {
			report(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step reads the rollout from the log and takes the decisions it is due,
// until it waits for devices or has ended. A conflict (another writer
// decided first) is returned wrapping events.ErrConflict.
func (c *Controller) Step(ctx context.Context, id string) error {
	_, err := c.step(ctx, id)
	return err
}

// step is Step; ended reports that the rollout has ended (as last read).
func (c *Controller) step(ctx context.Context, id string) (ended bool, err error) {
	for range 100 { // each pass takes at most one decision; bounded so a step always ends
		r, err := Load(ctx, c.log, id)
		if err != nil {
			return false, err
		}
		decided, err := c.next(ctx, r)
		if err != nil || !decided {
			return rollout.Terminal(r.State), err
		}
	}
	return false, nil
}

// decide appends p; it reports whether a decision was written.
func (c *Controller) decide(ctx context.Context, r *rollout.Rollout, p events.Payload) (bool, error) {
	if _, err := Decide(ctx, c.log, c.clock, r, c.actor, p); err != nil {
		return false, err
	}
	return true, nil
}

// next takes the one decision r is due, if any.
func (c *Controller) next(ctx context.Context, r *rollout.Rollout) (bool, error) {
	switch r.State {
	case rollout.Failing:
		if r.Spec.OnFailure == events.OnFailureRollback {
			return c.rollback(ctx, r)
		}
		return c.decide(ctx, r, &events.RolloutPaused{Reason: "failure budget spent: " + r.Reason})
	case rollout.Running:
	default:
		return false, nil // paused or ended: an operator's turn
	}
	if r.Current < 0 || r.Passed[r.Current] {
		if r.Current == len(r.Waves)-1 {
			return c.decide(ctx, r, &events.RolloutSucceeded{Devices: len(r.Targeted)})
		}
		w := r.Current + 1
		return c.decide(ctx, r, &events.WaveStarted{Wave: w, Devices: r.Waves[w]})
	}
	if err := c.targetWave(ctx, r); err != nil {
		return false, err
	}
	return c.gate(ctx, r)
}

// targetWave targets the wave's devices not targeted yet, within the rate
// limit, and applies the manifest to those targeted whose manifest has not
// changed since (a controller killed between the two).
func (c *Controller) targetWave(ctx context.Context, r *rollout.Rollout) error {
	budget := PaceBudget(r, c.now())
	for _, dev := range append(slices.Clone(r.Waves[r.Current]), c.joiners(ctx, r)...) {
		t := r.Targeted[dev]
		if t == nil {
			if budget == 0 {
				continue
			}
			var err error
			if t, err = c.target(ctx, r, dev, !slices.Contains(r.Spec.Devices, dev)); err != nil {
				if errors.Is(err, events.ErrConflict) {
					continue // another controller targeted it
				}
				return err
			}
			budget--
		}
		if err := c.applyTarget(ctx, r, t); err != nil {
			return err
		}
	}
	return nil
}

// joiners are the devices that match the selector now but did not when
// the rollout started and are not targeted yet (none without a Matcher).
func (c *Controller) joiners(ctx context.Context, r *rollout.Rollout) []string {
	m, ok := c.devices.(Matcher)
	if !ok {
		return nil
	}
	ids, err := m.Matching(ctx, r.Spec.Selector)
	if err != nil {
		return nil // the next step asks again
	}
	var out []string
	for _, id := range ids {
		if _, was := slices.BinarySearch(r.Spec.Devices, id); !was && r.Targeted[id] == nil {
			out = append(out, id)
		}
	}
	return out
}

// PaceBudget is how many more devices --max-per-minute R lets the
// controller target at now (-1: no limit). Targets are paced evenly from
// an anchor, the later of the wave's start and the last resume: by now at
// most floor(elapsed × R / 1 min) + 1 devices are targeted since the
// anchor. So the rate holds at R whatever the step interval (a late step
// catches up to the pace, never beyond it), and time spent paused or
// waiting on a gate is no credit for a burst.
func PaceBudget(r *rollout.Rollout, now time.Time) int {
	rate := r.Spec.MaxPerMinute
	if rate <= 0 {
		return -1
	}
	anchor := r.WaveAt
	if r.ResumedAt.After(anchor) {
		anchor = r.ResumedAt
	}
	done := 0
	for _, t := range r.Targeted {
		if !t.At.Before(anchor) {
			done++
		}
	}
	allowed := int(now.Sub(anchor)*time.Duration(rate)/time.Minute) + 1
	return max(allowed-done, 0)
}

// target appends DeviceTargeted for dev, expecting its subject empty: a
// device is targeted once, by one controller.
func (c *Controller) target(ctx context.Context, r *rollout.Rollout, dev string, joined bool) (*rollout.Target, error) {
	p := events.DeviceTargeted{Wave: rollout.JoinWave(r.Current), Joined: joined}
	last, err := c.log.LastManifest(ctx, dev)
	switch {
	case err == nil:
		p.PreviousGeneration = last.Generation
		if m, perr := last.Payload(); perr == nil {
			p.PreviousDigest = m.(*events.ManifestApplied).Digest
		}
	case errors.Is(err, events.ErrNotFound):
	default:
		return nil, err
	}
	p.Generation = p.PreviousGeneration + 1
	e, err := events.New(dev, r.ID, 0, c.actor, p)
	if err != nil {
		return nil, err
	}
	c.clock.Stamp(&e)
	seq, err := c.log.AppendExpect(ctx, e, 0)
	if err != nil {
		return nil, err
	}
	return &rollout.Target{Device: dev, Wave: p.Wave, Generation: p.Generation, PreviousGeneration: p.PreviousGeneration,
		PreviousDigest: p.PreviousDigest, Seq: seq}, nil
}

// applyTarget applies the rollout's manifest to a targeted device whose
// last manifest is still the one it had when targeted (not yet applied,
// or the controller died in between); once applied, or once someone else
// applied something, it is left alone.
func (c *Controller) applyTarget(ctx context.Context, r *rollout.Rollout, t *rollout.Target) error {
	var gen int64
	if last, err := c.log.LastManifest(ctx, t.Device); err == nil {
		gen = last.Generation
	} else if !errors.Is(err, events.ErrNotFound) {
		return err
	}
	if gen != t.PreviousGeneration {
		return nil
	}
	_, err := events.ApplyOnce(ctx, c.log, c.clock, t.Device, r.Spec.Manifest, c.actor, c.signer)
	if errors.Is(err, events.ErrConflict) {
		return nil // someone applied in between: the gate sees what the device has
	}
	return err
}

// gate decides the wave in progress once every device is judged: pass,
// fail (budget spent), or pause as inconclusive past the wave deadline.
func (c *Controller) gate(ctx context.Context, r *rollout.Rollout) (bool, error) {
	members := r.Waves[r.Current]
	var nPassed int
	var nFailed, nOffline, nWaiting []string
	for _, dev := range members {
		t := r.Targeted[dev]
		if t == nil {
			nWaiting = append(nWaiting, dev)
			continue
		}
		d, err := c.devices.Device(ctx, dev)
		if err != nil {
			nWaiting = append(nWaiting, dev)
			continue
		}
		v, _ := Judge(d, t, r.Spec.Soak, c.now())
		switch v {
		case Passed:
			nPassed++
		case Failed:
			nFailed = append(nFailed, dev)
		case Offline:
			nOffline = append(nOffline, dev)
		default:
			nWaiting = append(nWaiting, dev)
		}
	}
	if spent(r, len(nFailed)) {
		return c.decide(ctx, r, &events.WaveFailed{Wave: r.Current, Failed: nFailed,
			Reason: fmt.Sprintf("%d devices failed in wave %d (budget: %s)", len(nFailed), r.Current, budgetText(r))})
	}
	if nPassed+len(nFailed) == len(members) {
		return c.decide(ctx, r, &events.WavePassed{Wave: r.Current, Devices: nPassed})
	}
	if r.Spec.WaveDeadline > 0 && c.now().Sub(r.WaveAt) > r.Spec.WaveDeadline {
		reason := fmt.Sprintf("wave %d past its deadline of %s: %d offline, %d still converging", r.Current, r.Spec.WaveDeadline, len(nOffline), len(nWaiting))
		return c.decide(ctx, r, &events.RolloutPaused{Reason: reason, Inconclusive: true, Offline: nOffline})
	}
	return false, nil
}

// spent reports whether n failed devices spend the rollout's budget: more
// than --max-failures, or more than --max-failure-percent of the devices
// targeted so far.
func spent(r *rollout.Rollout, n int) bool {
	if n == 0 {
		return false
	}
	if n > r.Spec.MaxFailures {
		return true
	}
	if r.Spec.MaxFailurePercent > 0 && len(r.Targeted) > 0 {
		return float64(n)*100/float64(len(r.Targeted)) > r.Spec.MaxFailurePercent
	}
	return false
}

func budgetText(r *rollout.Rollout) string {
	s := fmt.Sprintf("at most %d", r.Spec.MaxFailures)
	if r.Spec.MaxFailurePercent > 0 {
		s += fmt.Sprintf(" and %g%%", r.Spec.MaxFailurePercent)
	}
	return s
}

// rollback gives every device the rollout changed a new generation with
// the manifest it had before (found on the log at its previous
// generation), then records RolloutRolledBack. A device that had no
// manifest before keeps the rollout's (nothing to go back to) and is named
// in the reason.
func (c *Controller) rollback(ctx context.Context, r *rollout.Rollout) (bool, error) {
	var back, none, wasSigned []string
	devs := make([]string, 0, len(r.Targeted))
	for d := range r.Targeted {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	for _, dev := range devs {
		t := r.Targeted[dev]
		if t.PreviousGeneration == 0 {
			none = append(none, dev)
			continue
		}
		prev, err := c.manifestAt(ctx, dev, t.PreviousGeneration)
		if err != nil {
			return false, err
		}
		last, err := c.log.LastManifest(ctx, dev)
		if err != nil {
			return false, err
		}
		if last.Generation == t.PreviousGeneration {
			continue // the rollout never applied it: nothing changed
		}
		if _, err := events.ApplyOnce(ctx, c.log, c.clock, dev, prev.Manifest, c.actor, c.signer); err != nil {
			return false, fmt.Errorf("roll back %s: %w", dev, err)
		}
		back = append(back, dev)
		if prev.Signature != "" {
			wasSigned = append(wasSigned, dev)
		}
	}
	reason := r.Reason
	if len(none) > 0 {
		reason += fmt.Sprintf("; %d devices had no manifest before and keep the rollout's: %v", len(none), none)
	}
	p := &events.RolloutRolledBack{Reason: reason, Devices: back}
	switch {
	case c.signer != nil:
		_, kid, err := c.signer.Sign(events.SignedStatement("", 0, "")) // the key id, whatever it signs
		if err != nil {
			return false, err
		}
		p.KeyID = kid
		p.Reason += "; each rollback generation is signed by the rollout controller's key " + kid
	case len(wasSigned) > 0:
		p.Reason += fmt.Sprintf("; %d rollback generations are unsigned although the manifests they restore were signed: "+
			"this controller has no signing key (start it with --key, or FLEET_ROLLOUT_KEY for fleet server); agents with --trust reject them: %v", len(wasSigned), wasSigned)
	}
	return c.decide(ctx, r, p)
}

// manifestAt returns the ManifestApplied device had at generation gen.
func (c *Controller) manifestAt(ctx context.Context, dev string, gen int64) (*events.ManifestApplied, error) {
	for s, err := range c.log.Read(ctx, events.Filter{Device: dev, Types: []string{events.TypeManifestApplied}}) {
		if err != nil {
			continue
		}
		if s.Generation == gen {
			p, err := s.Payload()
			if err != nil {
				return nil, err
			}
			return p.(*events.ManifestApplied), nil
		}
	}
	return nil, fmt.Errorf("roll back %s: its generation %d is not on the log: %w", dev, gen, events.ErrNotFound)
}
