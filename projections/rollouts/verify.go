package rollouts

import (
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/rollout"
)

// Mismatch is a gate decision on the log that the device events before it
// do not justify.
type Mismatch struct {
	Seq      uint64 `json:"seq"`
	Rollout  string `json:"rollout"`
	Decision string `json:"decision"`
	Detail   string `json:"detail"`
}

func (m Mismatch) String() string {
	return fmt.Sprintf("seq %d: rollout %s: %s: %s", m.Seq, m.Rollout, m.Decision, m.Detail)
}

// GateChecker re-derives a rollout's gate decisions from the log: fed every
// event in log order (a complete log, from sequence 1), it folds the
// devices' read models (projections.Fleet) and the rollouts (rollout.Set),
// and at each WaveFailed, WavePassed (not promoted) and inconclusive
// RolloutPaused checks that the device events before it justify it, with
// the controller's own Judge:
//
//   - WaveFailed: each device it names was targeted in that wave and Judge
//     said failed on some state of it after its targeting (the controller
//     read a read model at most as new as the log before its decision), and
//     that many failed devices spend the budget;
//   - WavePassed: every member of the wave was targeted and, before the
//     decision, either failed or was Ready and healthy at the rollout's
//     generation since at least the soak before the decision's time;
//   - RolloutPaused inconclusive: the wave had been running longer than its
//     deadline, and each device it names offline was in the wave and had
//     neither failed nor passed its soak by then.
//
// Whether a named device's heartbeats had stopped is not judged: heartbeats
// are not on the log (a fold of it has no heartbeat clock).
// Membership and the transition table are replay.Verify's (rollout.Set).
// Pure: no I/O.
type GateChecker struct {
	fleet   *projections.Fleet
	set     *rollout.Set
	watch   map[string]map[string]*gateMark // device: rollout id: what the device showed in its wave
	checked int
	out     []Mismatch
}

// gateMark is what a targeted device showed since its targeting.
type gateMark struct {
	wave       int
	failed     string    // why Judge said failed, the first time
	readySince time.Time // earliest Ready-since of a state Judge would pass with no soak
	ready      bool
}

// NewGateChecker starts a checker.
func NewGateChecker() *GateChecker {
	return &GateChecker{fleet: projections.NewFleet(), set: rollout.NewSet(), watch: map[string]map[string]*gateMark{}}
}

// farFuture is a now at which any soak has elapsed.
var farFuture = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Add feeds the next event of the log.
func (g *GateChecker) Add(s events.Stored) {
	if !rollout.IsRolloutEvent(s.Type) {
		g.fleet.Apply(s)
		if len(g.watch[s.Device]) > 0 {
			g.look(s.Device)
		}
		return
	}
	if !events.WrittenByItsWriter(s.Event) {
		return // forged: replay.Verify reports it
	}
	if r, ok := g.set.Get(s.Resource); ok && s.Type != events.TypeDeviceTargeted {
		g.check(s, r)
	}
	if g.set.Apply(s) != nil {
		return // a broken rule: replay.Verify reports it
	}
	if s.Type == events.TypeDeviceTargeted {
		r, _ := g.set.Get(s.Resource)
		if g.watch[s.Device] == nil {
			g.watch[s.Device] = map[string]*gateMark{}
		}
		g.watch[s.Device][s.Resource] = &gateMark{wave: r.Targeted[s.Device].Wave}
		g.look(s.Device)
	}
}

// look judges the device's state now for every rollout watching it.
func (g *GateChecker) look(dev string) {
	d, ok := g.fleet.Device(dev)
	for id, m := range g.watch[dev] {
		r, _ := g.set.Get(id)
		if r == nil || r.Current != m.wave || rollout.Terminal(r.State) {
			delete(g.watch[dev], id)
			continue
		}
		if !ok {
			continue
		}
		t := r.Targeted[dev]
		v, why := Judge(d, t, 0, farFuture)
		switch v {
		case Failed:
			if m.failed == "" {
				m.failed = why
			}
		case Passed:
			var since time.Time
			for _, res := range d.Resources {
				if res.Since.After(since) {
					since = res.Since
				}
			}
			if !m.ready || since.Before(m.readySince) {
				m.ready, m.readySince = true, since
			}
		}
	}
}

func (g *GateChecker) mark(dev, id string, wave int) *gateMark {
	m := g.watch[dev][id]
	if m == nil || m.wave != wave {
		return nil
	}
	return m
}

// check checks a decision of r (its state before the decision).
func (g *GateChecker) check(s events.Stored, r *rollout.Rollout) {
	p, err := s.Payload()
	if err != nil {
		return
	}
	bad := func(format string, args ...any) {
		g.out = append(g.out, Mismatch{Seq: s.Seq, Rollout: r.ID, Decision: s.Type, Detail: fmt.Sprintf(format, args...)})
	}
	switch p := p.(type) {
	case *events.WaveFailed:
		g.checked++
		for _, dev := range p.Failed {
			t := r.Targeted[dev]
			m := g.mark(dev, r.ID, p.Wave)
			switch {
			case t == nil || t.Wave != p.Wave:
				bad("names %s failed, but it was not targeted in wave %d", dev, p.Wave)
			case m == nil || m.failed == "":
				bad("names %s failed, but no state of it on the log after its targeting (generation %d) is failed", dev, t.Generation)
			}
		}
		if !spent(r, len(p.Failed)) {
			bad("%d failed devices do not spend the budget (%s)", len(p.Failed), budgetText(r))
		}
	case *events.WavePassed:
		if p.Promoted || p.Wave < 0 || p.Wave >= len(r.Waves) {
			return // an operator's promote skips the gate
		}
		g.checked++
		for _, dev := range r.Waves[p.Wave] {
			t := r.Targeted[dev]
			m := g.mark(dev, r.ID, p.Wave)
			switch {
			case t == nil:
				bad("wave %d passed, but its member %s was never targeted", p.Wave, dev)
			case m != nil && m.failed != "":
				// failed within the budget: counted, not waited on
			case m == nil || !m.ready:
				bad("wave %d passed, but %s was never Ready and healthy at generation %d before it", p.Wave, dev, t.Generation)
			case s.At.Sub(m.readySince) < r.Spec.Soak:
				bad("wave %d passed at %s, but %s was Ready only since %s, less than the soak of %s", p.Wave,
					s.At.UTC().Format(time.RFC3339Nano), dev, m.readySince.UTC().Format(time.RFC3339Nano), r.Spec.Soak)
			}
		}
	case *events.RolloutPaused:
		if !p.Inconclusive {
			return
		}
		g.checked++
		if r.Spec.WaveDeadline <= 0 || s.At.Sub(r.WaveAt) <= r.Spec.WaveDeadline {
			bad("paused as inconclusive at %s, but wave %d started at %s and its deadline is %s", s.At.UTC().Format(time.RFC3339Nano),
				r.Current, r.WaveAt.UTC().Format(time.RFC3339Nano), r.Spec.WaveDeadline)
		}
		// The devices it names offline: whether their heartbeats had
		// stopped is not on the log, but the log says whether each was in
		// the wave and had not already passed or failed (which the gate
		// would have counted instead of waiting on it).
		members := map[string]bool{}
		if r.Current >= 0 && r.Current < len(r.Waves) {
			for _, dev := range r.Waves[r.Current] {
				members[dev] = true
			}
		}
		for _, dev := range p.Offline {
			m := g.mark(dev, r.ID, r.Current)
			switch {
			case !members[dev]:
				bad("names %s offline, but it is not a member of wave %d", dev, r.Current)
			case m != nil && m.failed != "":
				bad("names %s offline, but it had failed (%s): the budget counts it", dev, m.failed)
			case m != nil && m.ready && s.At.Sub(m.readySince) >= r.Spec.Soak:
				bad("names %s offline, but it was Ready and healthy at the rollout's generation since %s, past the soak", dev, m.readySince.UTC().Format(time.RFC3339Nano))
			}
		}
	}
}

// Checked is how many gate decisions were checked.
func (g *GateChecker) Checked() int { return g.checked }

// Mismatches lists the decisions the log does not justify, in log order.
func (g *GateChecker) Mismatches() []Mismatch { return g.out }
