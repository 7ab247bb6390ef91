package projections

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// How a drift ended.
const (
	CorrectedReconciled  = "reconciled"  // the agent converged the resource again
	CorrectedSpecChanged = "specChanged" // a new manifest replaced the spec
	CorrectedRemoved     = "removed"     // the resource left the manifest
)

// DriftRecord is one drift of one resource.
type DriftRecord struct {
	At          time.Time           `json:"at"`
	Seq         uint64              `json:"seq"`
	EventID     string              `json:"eventId"`
	Generation  int64               `json:"generation"`
	Policy      string              `json:"policy"`
	Source      string              `json:"source,omitempty"`
	Differences []events.Difference `json:"differences"`
	CorrectedAt *time.Time          `json:"correctedAt"` // nil while open
	Correction  string              `json:"correction,omitempty"`
	CorrectedBy string              `json:"correctedBy,omitempty"` // how, in words
	FixSeq      uint64              `json:"fixSeq,omitempty"`      // the event that closed it
}

// ResourceDrift is the drift history of one resource.
type ResourceDrift struct {
	Device    string        `json:"device"`
	Resource  string        `json:"resource"`
	Kind      string        `json:"kind"`
	Count     int           `json:"count"`     // drifts ever
	Corrected int           `json:"corrected"` // closed
	Open      int           `json:"open"`
	Drifts    []DriftRecord `json:"drifts"` // the last keptDrifts, oldest first
}

// keptDrifts bounds the history kept per resource; counts cover all.
const keptDrifts = 20

type driftDevice struct {
	Device    string                    `json:"device"`
	Seen      dedup                     `json:"seen"`
	Gen       int64                     `json:"gen"`
	Resources map[string]*ResourceDrift `json:"-"`                 // persisted one key a resource: MarshalResource
	LastTry   map[string]int            `json:"lastTry,omitempty"` // resource -> last successful attempt number
}

// Drift is the drift-history read model: a pure fold of the log.
type Drift struct {
	devices map[string]*driftDevice
}

// NewDrift returns an empty drift history.
func NewDrift() *Drift { return &Drift{devices: map[string]*driftDevice{}} }

// Apply folds one event in (log order; repeats are applied once). It never
// panics on a valid event and ignores one whose payload does not decode.
func (h *Drift) Apply(e events.Stored) {
	if events.CheckID("device", e.Device) != nil || !events.WrittenByItsWriter(e.Event) {
		return // not a valid event, or forged (see Fleet.Apply)
	}
	switch e.Type {
	case events.TypeDriftDetected, events.TypeStatusChanged, events.TypeReconcileAttempted, events.TypeManifestApplied:
	default:
		return
	}
	p, err := e.Payload()
	if err != nil {
		return
	}
	d := h.devices[e.Device]
	if d == nil {
		d = &driftDevice{Device: e.Device}
		h.devices[e.Device] = d
	}
	if !d.Seen.fresh(e.Event, d.Gen) {
		return
	}
	switch p := p.(type) {
	case *events.ManifestApplied:
		d.Gen = e.Generation
	case *events.DriftDetected:
		if d.Resources == nil {
			d.Resources = map[string]*ResourceDrift{}
		}
		r := d.Resources[e.Resource]
		if r == nil {
			r = &ResourceDrift{Device: e.Device, Resource: e.Resource}
			d.Resources[e.Resource] = r
		}
		r.Kind = p.Kind
		diffs := slices.Clone(p.Differences)
		if diffs == nil {
			diffs = []events.Difference{}
		}
		r.Drifts = append(r.Drifts, DriftRecord{At: e.At, Seq: e.Seq, EventID: e.ID, Generation: e.Generation,
			Policy: p.Policy, Source: p.Source, Differences: diffs})
		r.Count++
		r.Open++
		if len(r.Drifts) > keptDrifts {
			// drop the oldest without copying (see applyAttempt)
			r.Drifts = r.Drifts[len(r.Drifts)-keptDrifts:]
		}
	case *events.ReconcileAttempted:
		if p.Outcome == events.OutcomeSucceeded && d.Resources[e.Resource] != nil {
			if d.LastTry == nil {
				d.LastTry = map[string]int{}
			}
			d.LastTry[e.Resource] = p.Attempt
		}
	case *events.StatusChanged:
		r := d.Resources[e.Resource]
		if r == nil || r.Open == 0 {
			return
		}
		var how, by string
		switch {
		case p.To == "Ready":
			how, by = CorrectedReconciled, "reconciled by "+e.Actor
			if n := d.LastTry[e.Resource]; n > 0 {
				by += " (attempt " + strconv.Itoa(n) + ")"
			}
		case p.To == "Removed":
			how, by = CorrectedRemoved, "removed from the manifest"
		case p.To == "Pending" && p.Trigger == "specChanged":
			how, by = CorrectedSpecChanged, "spec replaced by manifest generation "+strconv.FormatInt(e.Generation, 10)
		default:
			return
		}
		t := e.At
		for i := range r.Drifts {
			x := &r.Drifts[i]
			if x.CorrectedAt == nil {
				x.CorrectedAt, x.Correction, x.CorrectedBy, x.FixSeq = &t, how, by, e.Seq
			}
		}
		r.Corrected += r.Open
		r.Open = 0
		delete(d.LastTry, e.Resource)
	}
}

// Device returns the drift history of every resource of a device that ever
// drifted, sorted by resource id (empty if none).
func (h *Drift) Device(id string) []ResourceDrift {
	d := h.devices[id]
	out := []ResourceDrift{}
	if d == nil {
		return out
	}
	ids := make([]string, 0, len(d.Resources))
	for r := range d.Resources {
		ids = append(ids, r)
	}
	sort.Strings(ids)
	for _, r := range ids {
		out = append(out, copyDrift(*d.Resources[r]))
	}
	return out
}

// All returns every resource's drift history, by device then resource.
func (h *Drift) All() []ResourceDrift {
	ids := make([]string, 0, len(h.devices))
	for id := range h.devices {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := []ResourceDrift{}
	for _, id := range ids {
		out = append(out, h.Device(id)...)
	}
	return out
}

func copyDrift(r ResourceDrift) ResourceDrift {
	r.Drifts = slices.Clone(r.Drifts)
	if r.Drifts == nil {
		r.Drifts = []DriftRecord{}
	}
	return r
}

// MarshalDevice returns the fold's state for one device (deterministic JSON).
func (h *Drift) MarshalDevice(id string) ([]byte, bool) {
	d := h.devices[id]
	if d == nil {
		return nil, false
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(fmt.Sprintf("projections: encode drift of %s: %v", id, err))
	}
	return b, true
}

// LoadDevice restores one device's state written by MarshalDevice; load
// its resources with LoadResource after it.
func (h *Drift) LoadDevice(b []byte) error {
	var d driftDevice
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("load drift state: %w", err)
	}
	if err := events.CheckID("device", d.Device); err != nil {
		return fmt.Errorf("load drift state: %w", err)
	}
	if old := h.devices[d.Device]; old != nil {
		d.Resources = old.Resources
	}
	h.devices[d.Device] = &d
	return nil
}

// MarshalResource returns one resource's drift history (deterministic JSON),
// false if it never drifted. Only the resource an event names changes, so
// the service writes just that one.
func (h *Drift) MarshalResource(device, resource string) ([]byte, bool) {
	d := h.devices[device]
	if d == nil || d.Resources[resource] == nil {
		return nil, false
	}
	b, err := json.Marshal(d.Resources[resource])
	if err != nil {
		panic(fmt.Sprintf("projections: encode drift of %s/%s: %v", device, resource, err))
	}
	return b, true
}

// LoadResource restores one resource's history written by MarshalResource.
func (h *Drift) LoadResource(b []byte) error {
	var r ResourceDrift
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("load drift history: %w", err)
	}
	if events.CheckID("device", r.Device) != nil || events.CheckID("resource", r.Resource) != nil {
		return fmt.Errorf("load drift history: bad ids %q/%q", r.Device, r.Resource)
	}
	d := h.devices[r.Device]
	if d == nil {
		d = &driftDevice{Device: r.Device}
		h.devices[r.Device] = d
	}
	if d.Resources == nil {
		d.Resources = map[string]*ResourceDrift{}
	}
	d.Resources[r.Resource] = &r
	return nil
}
