package rollout

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Target is a device the rollout targeted (DeviceTargeted).
type Target struct {
	Device             string    `json:"device"`
	Wave               int       `json:"wave"`
	Generation         int64     `json:"generation"`
	PreviousGeneration int64     `json:"previousGeneration"`
	PreviousDigest     string    `json:"previousDigest,omitempty"`
	Joined             bool      `json:"joined,omitempty"`
	Seq                uint64    `json:"seq"`
	At                 time.Time `json:"at"` // when it was targeted (the event's time)
}

// Rollout is the fold of one rollout's events: its decisions and the
// devices it targeted. Its JSON is the rollout's read model.
type Rollout struct {
	ID        string                `json:"id"`
	State     string                `json:"state"`
	Spec      events.RolloutStarted `json:"spec"`
	Waves     [][]string            `json:"waves"`   // membership (Plan), joined devices added to their wave
	Current   int                   `json:"current"` // the wave in progress (-1: none started)
	Passed    []bool                `json:"passed"`
	Targeted  map[string]*Target    `json:"targeted"`
	Failed    []string              `json:"failed,omitempty"` // of the failed wave, as WaveFailed said
	Reason    string                `json:"reason,omitempty"` // of the last pause, failure or end
	Offline   []string              `json:"offline,omitempty"`
	StartedAt time.Time             `json:"startedAt"`
	WaveAt    time.Time             `json:"waveAt"`              // when the wave in progress started
	ResumedAt time.Time             `json:"resumedAt,omitempty"` // of the last RolloutResumed
	LastSeq   uint64                `json:"lastSeq"`             // last sequence on the rollout's subject (what compare-and-set expects)
	Decisions int                   `json:"decisions"`
}

// Apply folds one of the rollout's events in (log order). An event the
// table or the wave rules forbid is an error that says which rule, and
// changes nothing.
func (r *Rollout) Apply(s events.Stored) error {
	p, err := s.Payload()
	if err != nil {
		return err
	}
	if s.Type == events.TypeDeviceTargeted {
		return r.target(s, p.(*events.DeviceTargeted))
	}
	to, err := Next(r.State, s.Type)
	if err != nil {
		return err
	}
	switch p := p.(type) {
	case *events.RolloutStarted:
		if err := ParseWaves(p.Waves); err != nil {
			return err
		}
		r.ID, r.Spec, r.Current, r.StartedAt = s.Resource, *p, -1, s.At
		r.Waves = Plan(s.Resource, p.Devices, p.Waves)
		r.Passed = make([]bool, len(r.Waves))
		r.Targeted = map[string]*Target{}
	case *events.WaveStarted:
		if p.Wave != r.Current+1 || p.Wave >= len(r.Waves) || (r.Current >= 0 && !r.Passed[r.Current]) {
			return fmt.Errorf("WaveStarted wave %d: the next wave is %d, once wave %d passed", p.Wave, r.Current+1, r.Current)
		}
		want := slices.Clone(r.Waves[p.Wave])
		got := slices.Clone(p.Devices)
		sort.Strings(want)
		sort.Strings(got)
		if !slices.Equal(want, got) {
			return fmt.Errorf("WaveStarted wave %d: devices %v, but the rollout's membership (hash of rollout and device id) gives %v", p.Wave, got, want)
		}
		r.Current, r.WaveAt = p.Wave, s.At
	case *events.WavePassed:
		if p.Wave != r.Current || r.Current < 0 || r.Passed[p.Wave] {
			return fmt.Errorf("WavePassed wave %d: the wave in progress is %d (passed: %v)", p.Wave, r.Current, r.Current >= 0 && r.Passed[r.Current])
		}
		r.Passed[p.Wave] = true
	case *events.WaveFailed:
		if p.Wave != r.Current {
			return fmt.Errorf("WaveFailed wave %d: the wave in progress is %d", p.Wave, r.Current)
		}
		r.Failed, r.Reason = slices.Clone(p.Failed), p.Reason
	case *events.RolloutPaused:
		r.Reason, r.Offline = p.Reason, slices.Clone(p.Offline)
	case *events.RolloutResumed:
		r.Reason, r.Offline, r.ResumedAt = "", nil, s.At
	case *events.RolloutSucceeded:
		if r.Current != len(r.Waves)-1 || !r.Passed[r.Current] {
			return fmt.Errorf("RolloutSucceeded: wave %d of %d is in progress, not passed", r.Current, len(r.Waves))
		}
	case *events.RolloutAborted:
		r.Reason = p.Reason
	case *events.RolloutRolledBack:
		r.Reason = p.Reason
	case *events.RolloutSuperseded:
		r.Reason = "superseded by " + p.By
	}
	r.State = to
	r.LastSeq = s.Seq
	r.Decisions++
	return nil
}

// target folds a DeviceTargeted: while Running, for a device of the wave
// in progress (or one that joined it), once.
func (r *Rollout) target(s events.Stored, p *events.DeviceTargeted) error {
	switch {
	case r.State != Running:
		return fmt.Errorf("DeviceTargeted %s in state %s: devices are targeted only while Running", s.Device, stateName(r.State))
	case r.Targeted[s.Device] != nil:
		return fmt.Errorf("DeviceTargeted %s: already targeted at seq %d: a rollout targets a device once", s.Device, r.Targeted[s.Device].Seq)
	case p.Wave != r.Current:
		return fmt.Errorf("DeviceTargeted %s wave %d: the wave in progress is %d", s.Device, p.Wave, r.Current)
	}
	member := slices.Contains(r.Waves[r.Current], s.Device)
	if p.Joined {
		if slices.Contains(r.Spec.Devices, s.Device) {
			return fmt.Errorf("DeviceTargeted %s: marked joined, but it matched when the rollout started", s.Device)
		}
		r.Waves[r.Current] = append(r.Waves[r.Current], s.Device) // JoinWave: the wave in progress
	} else if !member {
		return fmt.Errorf("DeviceTargeted %s: not a member of wave %d (hash of rollout and device id)", s.Device, r.Current)
	}
	r.Targeted[s.Device] = &Target{Device: s.Device, Wave: p.Wave, Generation: p.Generation, PreviousGeneration: p.PreviousGeneration,
		PreviousDigest: p.PreviousDigest, Joined: p.Joined, Seq: s.Seq, At: s.At}
	return nil
}

func stateName(s string) string {
	if s == "" {
		return "(not started)"
	}
	return s
}

// Set folds the events of every rollout on the log.
type Set struct {
	m map[string]*Rollout
}

// NewSet returns an empty Set.
func NewSet() *Set { return &Set{m: map[string]*Rollout{}} }

// IsRolloutEvent reports whether t is a rollout's event (a decision or DeviceTargeted).
func IsRolloutEvent(t string) bool {
	return t == events.TypeDeviceTargeted || events.IsRolloutDecision(t)
}

// Apply folds s in if it is a rollout's event (else ignores it); the error
// is the rule it breaks (Rollout.Apply), prefixed with the rollout.
func (x *Set) Apply(s events.Stored) error {
	if !IsRolloutEvent(s.Type) {
		return nil
	}
	r := x.m[s.Resource]
	if r == nil {
		if s.Type == events.TypeDeviceTargeted {
			return fmt.Errorf("rollout %s: DeviceTargeted %s before the rollout started", s.Resource, s.Device)
		}
		r = &Rollout{ID: s.Resource, Current: -1}
		if err := r.Apply(s); err != nil {
			return fmt.Errorf("rollout %s: %w", s.Resource, err)
		}
		x.m[s.Resource] = r
		return nil
	}
	if err := r.Apply(s); err != nil {
		return fmt.Errorf("rollout %s: %w", s.Resource, err)
	}
	return nil
}

// Get returns the rollout with this id.
func (x *Set) Get(id string) (*Rollout, bool) {
	r, ok := x.m[id]
	return r, ok
}

// IDs lists the rollouts, sorted.
func (x *Set) IDs() []string {
	out := make([]string, 0, len(x.m))
	for id := range x.m {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// Clone is a deep copy of r: what a reader hands out while its own copy
// goes on folding new events (the spec is never changed after the start
// and is shared).
func (r *Rollout) Clone() *Rollout {
	c := *r
	c.Waves = make([][]string, len(r.Waves))
	for i, w := range r.Waves {
		c.Waves[i] = slices.Clone(w)
	}
	c.Passed = slices.Clone(r.Passed)
	c.Failed = slices.Clone(r.Failed)
	c.Offline = slices.Clone(r.Offline)
	c.Targeted = make(map[string]*Target, len(r.Targeted))
	for d, t := range r.Targeted {
		tc := *t
		c.Targeted[d] = &tc
	}
	return &c
}
