// Package projections folds the log into read models. The folds here are pure
// (no I/O, no clock): the projection service (service.go), `fleet replay` and
// time travel all use them, so the three give one answer.
//
// Read models:
//   - Fleet: per device its labels, desired and observed generation, every
//     resource's state, conditions and last seen; Explain answers "why is
//     this resource not Ready";
//   - Drift: per resource every drift, what differed, and when and how it
//     was corrected.
//
// A fold is not safe for concurrent use; the service guards it.
package projections

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Condition types of a device, in the order they are listed.
const (
	CondReady       = "Ready"
	CondProgressing = "Progressing"
	CondDegraded    = "Degraded"
	CondStale       = "Stale"     // computed at read time from the heartbeat bucket, see WithStale
	CondClockSkew   = "ClockSkew" // listed once the device's agent measured its clock (ClockSkewDetected)
)

// Condition statuses.
const (
	True    = "True"
	False   = "False"
	Unknown = "Unknown"
)

// Condition is one aspect of a device's health.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Device is the fleet-state read model of one device. Its JSON is the API's
// device shape (CLI -o json and HTTP alike) and is deterministic: equal folds
// give byte-equal JSON.
type Device struct {
	Device             string            `json:"device"`
	Labels             map[string]string `json:"labels"`
	Generation         int64             `json:"generation"`         // desired: the last manifest's generation
	ObservedGeneration int64             `json:"observedGeneration"` // highest generation whose resources all settled
	Conditions         []Condition       `json:"conditions"`
	LastSeen           *time.Time        `json:"lastSeen"` // time of the last event from the device's agent (log order)
	Resources          []Resource        `json:"resources"`
}

// Resource is one resource of a device, as its agent last reported it.
type Resource struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"` // Pending, Reconciling, Ready, Failed
	Since      time.Time  `json:"since"` // when it entered State
	Attempts   int        `json:"attempts"`
	Error      string     `json:"error"`
	RetryAfter *time.Time `json:"retryAfter"`
}

// Condition returns the device's condition of type t, if it has one.
func (d Device) Condition(t string) (Condition, bool) {
	for _, c := range d.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return Condition{}, false
}

// WithStale returns d with the Stale condition added: lastBeat is when the
// device's agent last wrote its heartbeat (zero: no heartbeat in the bucket)
// and ttl how long one counts. It is kept out of the fold because it
// depends on the time now.
func (d Device) WithStale(lastBeat, now time.Time, ttl time.Duration) Device {
	c := Condition{Type: CondStale}
	switch {
	case lastBeat.IsZero():
		c.Status, c.Reason, c.Message = True, "NoHeartbeat", "no heartbeat within the TTL of "+ttl.String()
	case now.Sub(lastBeat) > ttl:
		c.Status, c.Reason, c.Message = True, "HeartbeatExpired", "last heartbeat "+lastBeat.UTC().Format(time.RFC3339)+", TTL "+ttl.String()
	default:
		c.Status, c.Reason = False, "HeartbeatFresh"
	}
	out := d
	out.Conditions = append(slices.Clip(slices.DeleteFunc(slices.Clone(d.Conditions), func(x Condition) bool { return x.Type == CondStale })), c)
	return out
}

// manifestInfo is what the fold keeps of a device's last manifest.
type manifestInfo struct {
	Generation int64              `json:"generation"`
	ID         string             `json:"id"`
	Seq        uint64             `json:"seq"`
	Actor      string             `json:"actor"`
	At         time.Time          `json:"at"`
	Digest     string             `json:"digest"`
	Signed     bool               `json:"signed,omitempty"`
	Resources  []manifestResource `json:"resources"`
}

// manifestResource is one resource of the last manifest.
type manifestResource struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Digest  string `json:"digest"`  // spec digest
	SpecGen int64  `json:"specGen"` // generation that last changed this spec
}

// Attempt is one reconcile attempt, as kept for Explain.
type Attempt struct {
	Seq        uint64        `json:"seq"`
	At         time.Time     `json:"at"`
	Generation int64         `json:"generation"`
	Attempt    int           `json:"attempt"`
	Trigger    string        `json:"trigger,omitempty"`
	Outcome    string        `json:"outcome"`
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"durationNs"`
}

// keptAttempts is how many attempts per resource Explain can show.
const keptAttempts = 5

type resourceState struct {
	ID         string     `json:"id"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Since      time.Time  `json:"since"`
	Generation int64      `json:"generation"` // of the last status change
	Reported   bool       `json:"reported"`   // the agent has reported a status
	Attempts   int        `json:"attempts"`
	Error      string     `json:"error,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Trigger    string     `json:"trigger,omitempty"`
	RetryAfter *time.Time `json:"retryAfter,omitempty"`
	StatusSeq  uint64     `json:"statusSeq,omitempty"`
	Last       []Attempt  `json:"last,omitempty"` // newest last, at most keptAttempts
}

type rejection struct {
	Seq            uint64    `json:"seq"`
	At             time.Time `json:"at"`
	Reason         string    `json:"reason"`
	Generation     int64     `json:"rejectedGeneration"`
	KeptGeneration int64     `json:"keptGeneration"`
}

// deviceState is everything the Fleet fold keeps for one device; it is what
// the service persists.
type deviceState struct {
	Device       string            `json:"device"`
	Registered   bool              `json:"registered,omitempty"`
	Deregistered bool              `json:"deregistered,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"` // the agent's, from DeviceRegistered
	// Control-plane labels (DeviceLabeled): they win over the agent's;
	// see labels.go.
	SetLabels     map[string]string         `json:"setLabels,omitempty"`
	RemovedLabels []string                  `json:"removedLabels,omitempty"`
	LabelsSeq     uint64                    `json:"labelsSeq,omitempty"`
	AgentVersion  string                    `json:"agentVersion,omitempty"`
	Kinds         []string                  `json:"kinds,omitempty"`
	Generation    int64                     `json:"generation"`
	Observed      int64                     `json:"observed"`
	Manifest      *manifestInfo             `json:"manifest,omitempty"`
	Resources     map[string]*resourceState `json:"resources,omitempty"`
	LastSeen      *time.Time                `json:"lastSeen,omitempty"`
	Rejected      *rejection                `json:"rejected,omitempty"`
	Clock         *clockSkew                `json:"clock,omitempty"`  // the agent's last clock measurement, if it reported one
	Writer        string                    `json:"writer,omitempty"` // the agent's writer incarnation of its last event
	Seen          dedup                     `json:"seen"`
	LastSeq       uint64                    `json:"lastSeq"`

	specs map[string]*specDigest // resources of the last manifests by id, with their spec digests; a cache, not persisted
}

// specDigest is a resource with its SpecDigest, so that a manifest that
// keeps a resource unchanged does not encode and hash its spec again.
type specDigest struct {
	res    events.Resource
	digest string
}

// digest returns r's SpecDigest, from the cache when a manifest before had
// the same resource (Resource.Same: every field, nil and empty apart, which
// is what the canonical JSON distinguishes), and caches it.
func (d *deviceState) digest(r *events.Resource) string {
	c := d.specs[r.ID]
	if c != nil && c.res.Same(r) {
		return c.digest
	}
	if d.specs == nil {
		d.specs = map[string]*specDigest{}
	}
	c = &specDigest{res: *r, digest: r.SpecDigest()}
	d.specs[r.ID] = c
	return c.digest
}

// trimSpecs keeps the cache to the last manifest's resources (an entry of
// an id no longer there is harmless, the digest being r's own, but takes
// memory).
func (d *deviceState) trimSpecs(rs []events.Resource) {
	if len(d.specs) <= len(rs) {
		return
	}
	keep := make(map[string]bool, len(rs))
	for _, r := range rs {
		keep[r.ID] = true
	}
	for id := range d.specs {
		if !keep[id] {
			delete(d.specs, id)
		}
	}
}

// Fleet is the fleet-state read model: a pure fold of the log.
type Fleet struct {
	devices map[string]*deviceState
	skipped []Skipped
	forged  int // forged events seen (not folded)
}

// Forged is how many forged events the fold refused (events.CheckWriter).
func (f *Fleet) Forged() int { return f.forged }

// Skipped is a message a fold could not apply (not a valid event).
type Skipped struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// NewFleet returns an empty fleet state.
func NewFleet() *Fleet { return &Fleet{devices: map[string]*deviceState{}} }

// Apply folds one event in. Events must come in log order. An event already
// applied (same id, see dedup) changes nothing. Apply never panics on an
// event that passes events.Event.Check; one whose payload does not decode is
// recorded in Skipped and changes nothing, and so does a forged one (an
// actor that may not write it, events.CheckWriter), counted in Forged.
func (f *Fleet) Apply(e events.Stored) {
	if e.Device == "" && events.IsRolloutDecision(e.Type) {
		return // a rollout's decision: no device's state (the rollout's own read model folds it)
	}
	if events.CheckID("device", e.Device) != nil {
		f.skip(e.Seq, "device id: must be "+events.IDRule)
		return
	}
	if !events.WrittenByItsWriter(e.Event) {
		f.forged++
		f.skip(e.Seq, events.CheckWriter(e).Error())
		return
	}
	p, err := e.Payload()
	if err != nil {
		f.skip(e.Seq, err.Error())
		return
	}
	d := f.devices[e.Device]
	if d == nil {
		d = &deviceState{Device: e.Device, Resources: map[string]*resourceState{}}
		f.devices[e.Device] = d
	}
	if !d.Seen.fresh(e.Event, d.Generation) {
		return
	}
	d.LastSeq = e.Seq
	if isAgentOf(e.Actor, e.Device) {
		// The agent's events come in the order it wrote them, so its last
		// one is its newest, also when its clock was corrected back from
		// ahead (At runs back there) or its state was wiped (a new writer).
		if d.LastSeen == nil {
			d.LastSeen = new(time.Time)
		}
		*d.LastSeen = e.At // views copy it
		d.Writer = e.Writer
	}
	switch p := p.(type) {
	case *events.ManifestApplied:
		d.applyManifest(e, p)
	case *events.StatusChanged:
		d.applyStatus(e, p)
	case *events.ReconcileAttempted:
		d.applyAttempt(e, p)
	case *events.DriftDetected:
		d.resource(e.Resource, p.Kind) // drift history is the Drift fold's; the resource now exists
	case *events.DeviceRegistered:
		d.Registered, d.Deregistered = true, false
		d.Labels = maps(p.Labels)
		d.AgentVersion = p.AgentVersion
		d.Kinds = slices.Clone(p.Kinds)
	case *events.DeviceDeregistered:
		d.Deregistered = true
	case *events.ManifestRejected:
		d.Rejected = &rejection{Seq: e.Seq, At: e.At, Reason: p.Reason, Generation: p.Generation, KeptGeneration: p.KeptGeneration}
	case *events.DeviceLabeled:
		d.applyLabels(e.Seq, p)
	case *events.ClockSkewDetected:
		if isAgentOf(e.Actor, e.Device) {
			d.Clock = &clockSkew{Seq: e.Seq, At: e.At, Writer: e.Writer, Offset: p.Offset, Tolerance: p.Tolerance,
				ServerTime: p.ServerTime, LastStamp: p.LastStamp, Corrected: p.Corrected, RanBack: p.RanBack}
		}
	}
	d.settle()
}

// isAgentOf reports whether actor is "agent:"+device, without building it.
func isAgentOf(actor, device string) bool {
	rest, ok := strings.CutPrefix(actor, "agent:")
	return ok && rest == device
}

func (f *Fleet) skip(seq uint64, reason string) {
	if len(f.skipped) < 1000 {
		f.skipped = append(f.skipped, Skipped{Seq: seq, Reason: reason})
	}
}

// Skipped lists the messages that could not be applied (the first 1,000).
func (f *Fleet) Skipped() []Skipped { return slices.Clone(f.skipped) }

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (d *deviceState) resource(id, kind string) *resourceState {
	r := d.Resources[id]
	if r == nil {
		r = &resourceState{ID: id, Kind: kind, State: "Pending"}
		d.Resources[id] = r
	}
	if kind != "" {
		r.Kind = kind
	}
	return r
}

func (d *deviceState) applyManifest(e events.Stored, p *events.ManifestApplied) {
	prev := map[string]manifestResource{}
	if d.Manifest != nil {
		for _, r := range d.Manifest.Resources {
			prev[r.ID] = r
		}
	}
	m := &manifestInfo{Generation: e.Generation, ID: e.ID, Seq: e.Seq, Actor: e.Actor, At: e.At,
		Digest: p.Digest, Signed: p.Signature != ""}
	for i := range p.Manifest.Resources {
		r := &p.Manifest.Resources[i]
		mr := manifestResource{ID: r.ID, Kind: r.Kind, Digest: d.digest(r), SpecGen: e.Generation}
		if old, ok := prev[r.ID]; ok && old.Digest == mr.Digest {
			mr.SpecGen = old.SpecGen
		}
		m.Resources = append(m.Resources, mr)
		if _, ok := d.Resources[r.ID]; !ok && events.ValidID(r.ID) {
			d.Resources[r.ID] = &resourceState{ID: r.ID, Kind: r.Kind, State: "Pending", Since: e.At, Generation: e.Generation}
		}
	}
	d.Manifest = m
	d.Generation = e.Generation
	d.trimSpecs(p.Manifest.Resources)
}

func (d *deviceState) applyStatus(e events.Stored, p *events.StatusChanged) {
	if p.To == "Removed" {
		delete(d.Resources, e.Resource)
		return
	}
	r := d.resource(e.Resource, p.Kind)
	r.State, r.Since, r.Generation, r.Reported = p.To, e.At, e.Generation, true
	r.Trigger, r.Reason, r.StatusSeq = p.Trigger, p.Reason, e.Seq
	switch {
	case p.Attempts > 0:
		r.Attempts = p.Attempts
	case p.To == "Pending":
		r.Attempts = 0
	}
	r.RetryAfter = nil
	switch p.To {
	case "Failed":
		r.Error = p.Error
		if p.Error == "" && p.Reason != "" {
			r.Error = p.Reason
		}
		if p.RetryAfter != nil {
			t := *p.RetryAfter
			r.RetryAfter = &t
		}
	case "Ready", "Pending":
		r.Error = ""
	}
}

func (d *deviceState) applyAttempt(e events.Stored, p *events.ReconcileAttempted) {
	r := d.resource(e.Resource, p.Kind)
	if p.Attempt > r.Attempts {
		r.Attempts = p.Attempt
	}
	if p.Outcome == events.OutcomeFailed {
		r.Error = p.Error
	}
	r.Last = append(r.Last, Attempt{Seq: e.Seq, At: e.At, Generation: e.Generation, Attempt: p.Attempt,
		Trigger: p.Trigger, Outcome: p.Outcome, Error: p.Error, Duration: p.Duration})
	if len(r.Last) > keptAttempts {
		// drop the oldest without copying: append moves the kept ones to a
		// new array only when this one is full (about every keptAttempts)
		r.Last = r.Last[len(r.Last)-keptAttempts:]
	}
}

// settled reports whether r has reached Ready or Failed for its current spec.
func settled(r *resourceState, specGen int64) bool {
	return r != nil && r.Reported && r.Generation >= specGen && (r.State == "Ready" || r.State == "Failed")
}

// settle raises the observed generation when the device's agent has been
// seen, every resource of the last manifest has settled (Ready or Failed)
// on its current spec and every resource that left the manifest has been
// removed. Without the first condition a manifest with no resources would
// count as observed the moment it is applied, on a device no agent ever ran
// on.
func (d *deviceState) settle() {
	m := d.Manifest
	if m == nil || d.Observed >= m.Generation || !d.seen() {
		return
	}
	if len(d.Resources) != len(m.Resources) {
		return
	}
	for _, mr := range m.Resources {
		if !settled(d.Resources[mr.ID], mr.SpecGen) {
			return
		}
	}
	d.Observed = m.Generation
}

// seen reports whether the device's side has ever reported: its agent
// wrote an event (lastSeen), the device registered, or a status of one of
// its resources was reported. Heartbeats are not in the log; Stale tells a
// device seen once but silent now.
func (d *deviceState) seen() bool {
	if d.LastSeen != nil || d.Registered {
		return true
	}
	for _, r := range d.Resources {
		if r.Reported {
			return true
		}
	}
	return false
}

// Device returns the read model of one device; false if the log holds
// nothing for it or it was deregistered.
func (f *Fleet) Device(id string) (Device, bool) {
	d := f.devices[id]
	if d == nil || d.Deregistered {
		return Device{}, false
	}
	return d.view(), true
}

// Devices returns every device, sorted by id.
func (f *Fleet) Devices() []Device {
	out := make([]Device, 0, len(f.devices))
	for _, id := range f.DeviceIDs() {
		if d, ok := f.Device(id); ok {
			out = append(out, d)
		}
	}
	return out
}

// DeviceIDs lists every device the fold knows (deregistered ones too), sorted.
func (f *Fleet) DeviceIDs() []string {
	ids := make([]string, 0, len(f.devices))
	for id := range f.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (d *deviceState) view() Device {
	v := Device{Device: d.Device, Labels: d.labels(), Generation: d.Generation, ObservedGeneration: d.Observed,
		Resources: []Resource{}}
	if d.LastSeen != nil {
		t := *d.LastSeen
		v.LastSeen = &t
	}
	ids := make([]string, 0, len(d.Resources))
	for id := range d.Resources {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var notReady, failed, busy []string
	for _, id := range ids {
		r := d.Resources[id]
		res := Resource{ID: r.ID, Kind: r.Kind, State: r.State, Since: r.Since, Attempts: r.Attempts, Error: r.Error}
		if r.RetryAfter != nil {
			t := *r.RetryAfter
			res.RetryAfter = &t
		}
		v.Resources = append(v.Resources, res)
		if r.State != "Ready" {
			notReady = append(notReady, id)
		}
		switch r.State {
		case "Failed":
			failed = append(failed, id)
		case "Pending", "Reconciling":
			busy = append(busy, id)
		}
	}
	v.Conditions = d.conditions(notReady, failed, busy)
	if c, ok := d.clockCondition(); ok {
		v.Conditions = append(v.Conditions, c)
	}
	return v
}

func list(ids []string) string {
	if len(ids) > 5 {
		return strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
	}
	return strings.Join(ids, ", ")
}

func (d *deviceState) conditions(notReady, failed, busy []string) []Condition {
	seen := d.seen()
	ready := Condition{Type: CondReady, Status: False}
	switch {
	case d.Manifest == nil:
		ready.Reason, ready.Message = "NoManifest", "no manifest applied yet"
	case !seen:
		ready.Reason, ready.Message = "AwaitingAgent", fmt.Sprintf("no agent has reported from this device: generation %d not yet observed", d.Generation)
	case d.Observed < d.Generation:
		ready.Reason, ready.Message = "GenerationNotObserved", fmt.Sprintf("generation %d not yet settled (observed %d)", d.Generation, d.Observed)
	case len(notReady) > 0:
		ready.Reason, ready.Message = "ResourcesNotReady", fmt.Sprintf("%d of %d resources not Ready: %s", len(notReady), len(d.Resources), list(notReady))
	default:
		ready.Status, ready.Reason, ready.Message = True, "AllResourcesReady", fmt.Sprintf("%d resources Ready at generation %d", len(d.Resources), d.Generation)
	}
	prog := Condition{Type: CondProgressing, Status: False}
	switch {
	case d.Manifest != nil && !seen: // nothing moves until an agent runs
		prog.Reason, prog.Message = "AwaitingAgent", "no agent has reported from this device"
	case len(busy) > 0:
		prog.Status, prog.Reason, prog.Message = True, "Reconciling", fmt.Sprintf("%d resources Pending or Reconciling: %s", len(busy), list(busy))
	case d.Manifest != nil && d.Observed < d.Generation:
		prog.Status, prog.Reason, prog.Message = True, "GenerationNotObserved", fmt.Sprintf("generation %d not yet settled", d.Generation)
	default:
		prog.Reason = "Settled"
	}
	deg := Condition{Type: CondDegraded, Status: False}
	switch {
	case len(failed) > 0:
		r := d.Resources[failed[0]]
		deg.Status, deg.Reason, deg.Message = True, "ResourcesFailed", fmt.Sprintf("%d resources Failed: %s (%s: %s)", len(failed), list(failed), r.ID, r.Error)
	case d.Rejected != nil && d.Rejected.Generation > d.Generation:
		deg.Status, deg.Reason, deg.Message = True, "ManifestRejected", fmt.Sprintf("generation %d rejected: %s", d.Rejected.Generation, d.Rejected.Reason)
	default:
		deg.Reason = "NoFailures"
	}
	return []Condition{ready, prog, deg}
}

// MarshalDevice returns the fold's whole state for one device (more than
// the Device view: dedup state, manifest and attempts), deterministic JSON.
// LoadDevice restores it; the service persists it with its checkpoint.
func (f *Fleet) MarshalDevice(id string) ([]byte, bool) {
	d := f.devices[id]
	if d == nil {
		return nil, false
	}
	b, err := json.Marshal(d)
	if err != nil { // cannot happen: plain data
		panic(fmt.Sprintf("projections: encode device %s: %v", id, err))
	}
	return b, true
}

// LoadDevice restores one device's state written by MarshalDevice.
func (f *Fleet) LoadDevice(b []byte) error {
	var d deviceState
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("load device state: %w", err)
	}
	if err := events.CheckID("device", d.Device); err != nil {
		return fmt.Errorf("load device state: %w", err)
	}
	if d.Resources == nil {
		d.Resources = map[string]*resourceState{}
	}
	f.devices[d.Device] = &d
	return nil
}
