package replay

import (
	"errors"
	"fmt"
	"iter"
	"sort"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/rollout"
)

// rollout checks one of a rollout's events (see the rollout rule).
func (v *Verifier) rollout(s events.Stored) {
	if _, known := v.rollouts.Get(s.Resource); !known && !v.complete && s.Type != events.TypeRolloutStarted {
		return // its start is before this part of the log
	}
	if err := v.rollouts.Apply(s); err != nil {
		v.add(s.Seq, ViolationRollout, s.Event, "%v", err)
	}
}

// Kinds of violation Verify reports.
const (
	ViolationTransition    = "transition"      // a StatusChanged the fsm table forbids, or that does not start where the resource was
	ViolationGeneration    = "generation"      // a manifest generation, or a resource's generation, going backwards
	ViolationWriterOrder   = "writer-order"    // an agent's event time or id going backwards
	ViolationDuplicateID   = "duplicate-id"    // an event id stored twice
	ViolationNotInManifest = "not-in-manifest" // a status for a resource absent from the manifest of its generation
	ViolationUndecodable   = "undecodable"     // a message on the log that is not a valid event
	ViolationForged        = "forged"          // an event whose actor may not write it (events.CheckWriter)
	ViolationRollout       = "rollout"         // a rollout's event its transition table or wave rules forbid (package rollout)
	ViolationGate          = "gate"            // a rollout's gate decision the device events before it do not justify (rollouts.GateChecker, added by fleet replay --verify)
)

// ViolationKinds lists every kind Verify reports, in the order summaries
// show them (ViolationGate, added by `fleet replay --verify`, last).
var ViolationKinds = []string{ViolationTransition, ViolationGeneration, ViolationWriterOrder,
	ViolationDuplicateID, ViolationNotInManifest, ViolationUndecodable, ViolationForged, ViolationRollout}

// Violation is one broken rule at one place in the log.
type Violation struct {
	Seq      uint64 `json:"seq"`
	Kind     string `json:"kind"`
	Device   string `json:"device,omitempty"`
	Resource string `json:"resource,omitempty"`
	ID       string `json:"id,omitempty"`
	Detail   string `json:"detail"`
}

func (v Violation) String() string {
	where := v.Device
	if v.Resource != "" {
		where += "/" + v.Resource
	}
	if where != "" {
		where = " " + where
	}
	return fmt.Sprintf("seq %d: %s%s: %s", v.Seq, v.Kind, where, v.Detail)
}

// Report is the outcome of Verify.
type Report struct {
	Events     int            `json:"events"`
	Devices    int            `json:"devices"`
	Violations []Violation    `json:"violations"`
	ByKind     map[string]int `json:"byKind"`
	Complete   bool           `json:"complete"` // the whole log was checked, from sequence 1
}

// OK reports whether no rule was broken.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// SummaryLine counts events, devices and violations (by kind).
func (r Report) SummaryLine() string {
	s := fmt.Sprintf("verified %d events of %d devices: %d violations", r.Events, r.Devices, len(r.Violations))
	var parts []string
	for _, k := range append(ViolationKinds[:len(ViolationKinds):len(ViolationKinds)], ViolationGate) {
		if n := r.ByKind[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if !r.Complete {
		s += "; part of the log: checks that need earlier events were skipped where they were missing"
	}
	return s
}

// Verifier checks events, fed in log order, against fleet's rules. It is
// pure: no I/O. Not safe for concurrent use.
//
// Rules:
//   - transition: every StatusChanged goes from one state to another by a row
//     of the fsm table, and starts in the state the resource's previous
//     StatusChanged left it in (on a complete log, a resource's first status
//     starts from nothing);
//   - generation: a device's ManifestApplied generations strictly increase;
//     the generation of a resource's events never decreases;
//   - writer-order: each agent's (actor agent:ID) events have strictly
//     increasing event times and ids, in log order; for events that carry a
//     writer sequence (Event.Writer, WriterSeq) it is the sequence that
//     strictly increases per writer, and the event time may run back only
//     at a ClockSkewDetected that says so (RanBack: stamps that were ahead
//     moved back to real time). Control-plane actors take a fresh clock per
//     command, so their order is checked by the manifest generation instead;
//   - duplicate-id: no event id is stored twice (a second copy is reported
//     once, as this, and not checked against the other rules);
//   - not-in-manifest: a StatusChanged (other than to Removed) names a
//     resource of the manifest of its generation; on a complete log that
//     generation must have been applied;
//   - undecodable: every message is a valid event;
//   - forged: every event's actor may write it (events.CheckWriter: agent:X
//     on device X's agent subjects, user:NAME on its manifest); a forged
//     event is reported and not checked against the other rules, so it can
//     neither blame the agent it names nor move that agent's marks;
//   - rollout: a rollout's decisions follow its transition table
//     (rollout.Table), each wave's members are the ones its hash gives
//     (rollout.Plan), waves start in order once the one before passed, and a
//     device is targeted once, while Running, in the wave in progress
//     (rollout.Rollout.Apply). On a part of the log, rollouts whose start
//     is not in it are not checked.
type Verifier struct {
	rollouts   *rollout.Set
	complete   bool
	seen       map[ulid.ULID]uint64
	writers    map[string]writerMark
	devices    map[string]*deviceMark
	events     int
	violations []Violation
}

type writerMark struct {
	at   time.Time
	id   ulid.ULID
	seq  uint64
	wseq uint64 // writer sequence, for writers that number their events
}

type deviceMark struct {
	manifestGen int64
	manifestSeq uint64
	manifests   map[int64]map[string]bool // generation: resource ids
	resources   map[string]*resourceMark
}

type resourceMark struct {
	writer    string // Writer of the last status
	state     fsm.State
	statusSeq uint64
	hasStatus bool
	gen       int64
	genSeq    uint64
}

// NewVerifier starts a verifier. complete says the events fed are the whole
// log from sequence 1, so rules that need earlier events are fully applied.
func NewVerifier(complete bool) *Verifier {
	return &Verifier{complete: complete, seen: map[ulid.ULID]uint64{}, writers: map[string]writerMark{},
		devices: map[string]*deviceMark{}, rollouts: rollout.NewSet()}
}

func (v *Verifier) add(seq uint64, kind string, e events.Event, format string, args ...any) {
	v.violations = append(v.violations, Violation{Seq: seq, Kind: kind, Device: e.Device, Resource: e.Resource,
		ID: e.ID, Detail: fmt.Sprintf(format, args...)})
}

// Bad records a message that did not decode.
func (v *Verifier) Bad(err error) {
	var bm *events.BadMessage
	if errors.As(err, &bm) {
		v.violations = append(v.violations, Violation{Seq: bm.Seq, Kind: ViolationUndecodable, Detail: bm.Err.Error()})
		return
	}
	v.violations = append(v.violations, Violation{Kind: ViolationUndecodable, Detail: err.Error()})
}

// Add checks one event, the next in log order.
func (v *Verifier) Add(s events.Stored) {
	v.events++
	e := s.Event
	if err := events.CheckWriter(s); err != nil {
		var f *events.ForgedEvent
		errors.As(err, &f)
		v.add(s.Seq, ViolationForged, e, "%s on %s claims actor %q, but only %s writes there: not folded", f.Type, f.Subject, f.Actor, f.Want)
		return
	}
	id, idErr := ulid.ParseStrict(e.ID)
	if idErr == nil {
		if first, dup := v.seen[id]; dup {
			// a second copy is one fault; checking it again would report its echo
			v.add(s.Seq, ViolationDuplicateID, e, "id %s already stored at seq %d", e.ID, first)
			return
		}
		v.seen[id] = s.Seq
	}
	if rollout.IsRolloutEvent(e.Type) {
		v.rollout(s)
		return
	}
	d := v.devices[e.Device]
	if d == nil {
		d = &deviceMark{manifests: map[int64]map[string]bool{}, resources: map[string]*resourceMark{}}
		v.devices[e.Device] = d
	}
	if strings.HasPrefix(e.Actor, "agent:") && e.Writer != "" {
		v.writerOrder(s)
	} else if strings.HasPrefix(e.Actor, "agent:") && idErr == nil {
		if w, ok := v.writers[e.Actor]; ok {
			if !e.At.After(w.at) {
				v.add(s.Seq, ViolationWriterOrder, e, "writer %s: event time %s is not after %s of its previous event at seq %d",
					e.Actor, e.At.UTC().Format(time.RFC3339Nano), w.at.UTC().Format(time.RFC3339Nano), w.seq)
			}
			if id.Compare(w.id) <= 0 {
				v.add(s.Seq, ViolationWriterOrder, e, "writer %s: id %s is not after id %s of its previous event at seq %d",
					e.Actor, e.ID, w.id, w.seq)
			}
		}
		v.writers[e.Actor] = writerMark{at: e.At, id: id, seq: s.Seq}
	}
	p, err := e.Payload()
	if err != nil {
		v.violations = append(v.violations, Violation{Seq: s.Seq, Kind: ViolationUndecodable, Device: e.Device,
			Resource: e.Resource, ID: e.ID, Detail: err.Error()})
		return
	}
	if m, ok := p.(*events.ManifestApplied); ok {
		if d.manifestSeq > 0 && e.Generation <= d.manifestGen {
			v.add(s.Seq, ViolationGeneration, e, "manifest generation %d after generation %d at seq %d: generations must increase",
				e.Generation, d.manifestGen, d.manifestSeq)
		}
		if e.Generation > d.manifestGen || d.manifestSeq == 0 {
			d.manifestGen, d.manifestSeq = e.Generation, s.Seq
		}
		ids := make(map[string]bool, len(m.Manifest.Resources))
		for _, r := range m.Manifest.Resources {
			ids[r.ID] = true
		}
		d.manifests[e.Generation] = ids
		return
	}
	if e.Resource == "" {
		return
	}
	r := d.resources[e.Resource]
	if r == nil {
		r = &resourceMark{}
		d.resources[e.Resource] = r
	}
	if r.genSeq > 0 && e.Generation < r.gen {
		v.add(s.Seq, ViolationGeneration, e, "%s for generation %d after generation %d at seq %d: a resource's generation must not go backwards",
			e.Type, e.Generation, r.gen, r.genSeq)
	}
	if e.Generation >= r.gen || r.genSeq == 0 {
		r.gen, r.genSeq = e.Generation, s.Seq
	}
	sc, ok := p.(*events.StatusChanged)
	if !ok {
		return
	}
	from, to := fsm.State(sc.From), fsm.State(sc.To)
	if !fsm.Valid(from, to) {
		v.add(s.Seq, ViolationTransition, e, "%s -> %s: the fsm table has no such transition", stateName(from), to)
	}
	switch {
	case r.hasStatus && from != r.state && !(r.state == fsm.Removed && from == fsm.None) &&
		!(from == fsm.None && e.Writer != "" && e.Writer != r.writer): // a new writer (wiped state) starts from nothing
		v.add(s.Seq, ViolationTransition, e, "from %s, but the resource's previous status (seq %d) left it %s",
			stateName(from), r.statusSeq, stateName(r.state))
	case !r.hasStatus && v.complete && from != fsm.None && from != fsm.Removed:
		v.add(s.Seq, ViolationTransition, e, "first status of the resource starts from %s: must start from nothing", stateName(from))
	}
	r.state, r.statusSeq, r.hasStatus, r.writer = to, s.Seq, true, e.Writer
	if to == fsm.Removed {
		return
	}
	ids, known := d.manifests[e.Generation]
	switch {
	case known && !ids[e.Resource]:
		v.add(s.Seq, ViolationNotInManifest, e, "status %s for generation %d, whose manifest has no resource %q",
			to, e.Generation, e.Resource)
	case !known && v.complete:
		v.add(s.Seq, ViolationNotInManifest, e, "status %s for generation %d, which was never applied to device %s",
			to, e.Generation, e.Device)
	}
}

// writerOrder checks the order of an event that carries a writer sequence.
func (v *Verifier) writerOrder(s events.Stored) {
	e := s.Event
	k := e.Actor + " " + e.Writer
	w, ok := v.writers[k]
	v.writers[k] = writerMark{at: e.At, seq: s.Seq, wseq: e.WriterSeq}
	if !ok {
		return
	}
	if e.WriterSeq <= w.wseq {
		v.add(s.Seq, ViolationWriterOrder, e, "writer %s (%s): sequence %d is not after %d of its previous event at seq %d",
			e.Actor, e.Writer, e.WriterSeq, w.wseq, w.seq)
	}
	if e.At.Before(w.at) && !ranBack(e) {
		v.add(s.Seq, ViolationWriterOrder, e, "writer %s (%s): event time %s is before %s of its previous event at seq %d, and no ClockSkewDetected says the clock was moved back",
			e.Actor, e.Writer, e.At.UTC().Format(time.RFC3339Nano), w.at.UTC().Format(time.RFC3339Nano), w.seq)
	}
}

// ranBack reports whether e is a ClockSkewDetected that moved its writer's
// stamps back.
func ranBack(e events.Event) bool {
	if e.Type != events.TypeClockSkewDetected {
		return false
	}
	p, err := e.Payload()
	if err != nil {
		return false
	}
	c, ok := p.(*events.ClockSkewDetected)
	return ok && c.RanBack
}

func stateName(s fsm.State) string {
	if s == fsm.None {
		return "(new)"
	}
	return string(s)
}

// Report returns what was found so far; violations are in log order.
func (v *Verifier) Report() Report {
	vs := append([]Violation(nil), v.violations...)
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].Seq < vs[j].Seq })
	by := map[string]int{}
	for _, x := range vs {
		by[x.Kind]++
	}
	return Report{Events: v.events, Devices: len(v.devices), Violations: vs, ByKind: by, Complete: v.complete}
}

// Verify checks a sequence of events in log order (as events.Store.Read
// yields them: a *events.BadMessage error is a violation, any other error
// ends the check and is returned).
func Verify(seq iter.Seq2[events.Stored, error], complete bool) (Report, error) {
	v := NewVerifier(complete)
	for s, err := range seq {
		if err != nil {
			var bm *events.BadMessage
			if errors.As(err, &bm) {
				v.Bad(err)
				continue
			}
			return v.Report(), err
		}
		v.Add(s)
	}
	return v.Report(), nil
}
