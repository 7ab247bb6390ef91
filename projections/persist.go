package projections

import (
	"encoding/json"
	"fmt"

	"github.com/fleet-dev/fleet/events"
)

// How the service persists its default read models (ReadModel):
// one Pebble key per part that an event can change, so that a batch re-encodes only what it touched (a status
// change re-encodes one resource and the device's small header, not the
// whole device with its manifest).
//
//	f/<device>              Fleet: the device header (no manifest, no resources)
//	m/<device>              Fleet: the device's last manifest
//	g/<device>/<resource>   Fleet: one resource's state (absent: removed)
//	d/<device>              Drift: the device header (no histories)
//	r/<device>/<resource>   Drift: one resource's history
//
// The runtime's own keys are c (checkpoint), v (layout) and s/ (skipped).
const prefixSkipped = "s/" // + 20-digit sequence: why a message was skipped

// The fleet state's parts: f (header), m (manifest), g (resources).
func (f *Fleet) Kinds() string { return "fmg" }

// Touch adds the parts of the fleet state that applying e can change.
func (f *Fleet) Touch(e events.Stored, dirty Dirty) {
	dirty.Add('f', e.Device, "")
	if e.Resource != "" {
		dirty.Add('g', e.Device, e.Resource)
	}
	if e.Type == events.TypeManifestApplied {
		dirty.Add('m', e.Device, "")
		if p, err := e.Payload(); err == nil {
			for _, r := range p.(*events.ManifestApplied).Manifest.Resources {
				if events.ValidID(r.ID) {
					dirty.Add('g', e.Device, r.ID)
				}
			}
		}
	}
}

// Parts calls fn for every part the fleet state holds.
func (f *Fleet) Parts(fn func(Part)) {
	for id, d := range f.devices {
		fn(Part{'f', id, ""})
		if d.Manifest != nil {
			fn(Part{'m', id, ""})
		}
		for r := range d.Resources {
			fn(Part{'g', id, r})
		}
	}
}

// Encode returns a part's JSON, false if the fleet state no longer holds it.
func (f *Fleet) Encode(p Part) ([]byte, bool) { return encodeJSON(p, f.partValue(p)) }

// partValue is what the fleet state stores for p (nil: it holds no such part).
func (f *Fleet) partValue(p Part) any {
	d := f.devices[p.Device]
	switch {
	case d == nil:
	case p.Kind == 'f':
		hdr := *d
		hdr.Manifest, hdr.Resources = nil, nil
		return &hdr
	case p.Kind == 'm' && d.Manifest != nil:
		return d.Manifest
	case p.Kind == 'g' && d.Resources[p.Resource] != nil:
		return d.Resources[p.Resource]
	}
	return nil
}

// Load restores one part of the fleet state (headers before the rest).
func (f *Fleet) Load(p Part, val []byte) error {
	k := p.key()
	switch p.Kind {
	case 'f':
		var d deviceState
		if err := loadJSON(p, val, &d); err != nil {
			return err
		}
		d.Device, d.Manifest, d.Resources = p.Device, nil, map[string]*resourceState{}
		f.devices[p.Device] = &d
	case 'm':
		d := f.devices[p.Device]
		if d == nil {
			return fmt.Errorf("key %q: manifest of an unknown device", k)
		}
		var m manifestInfo
		if err := loadJSON(p, val, &m); err != nil {
			return err
		}
		d.Manifest = &m
	case 'g':
		d := f.devices[p.Device]
		if d == nil || p.Resource == "" {
			return fmt.Errorf("key %q: resource of an unknown device", k)
		}
		var r resourceState
		if err := loadJSON(p, val, &r); err != nil {
			return err
		}
		d.Resources[p.Resource] = &r
	default:
		return fmt.Errorf("key %q: not a fleet-state key", k)
	}
	return nil
}

// The drift history's parts: d (header), r (one resource's history).
func (h *Drift) Kinds() string { return "dr" }

// Touch adds the parts of the drift history that applying e can change.
func (h *Drift) Touch(e events.Stored, dirty Dirty) {
	dirty.Add('d', e.Device, "")
	if e.Resource != "" {
		dirty.Add('r', e.Device, e.Resource)
	}
}

// Parts calls fn for every part the drift history holds.
func (h *Drift) Parts(fn func(Part)) {
	for id, d := range h.devices {
		fn(Part{'d', id, ""})
		for r := range d.Resources {
			fn(Part{'r', id, r})
		}
	}
}

// Encode returns a part's JSON, false if the history no longer holds it.
func (h *Drift) Encode(p Part) ([]byte, bool) { return encodeJSON(p, h.partValue(p)) }

// partValue is what the drift history stores for p (nil: it holds no such part).
func (h *Drift) partValue(p Part) any {
	d := h.devices[p.Device]
	switch {
	case d == nil:
	case p.Kind == 'd':
		return d
	case p.Kind == 'r' && d.Resources[p.Resource] != nil:
		return d.Resources[p.Resource]
	}
	return nil
}

// Load restores one part of the drift history.
func (h *Drift) Load(p Part, val []byte) error {
	k := p.key()
	switch p.Kind {
	case 'd':
		var d driftDevice
		if err := loadJSON(p, val, &d); err != nil {
			return err
		}
		d.Device = p.Device
		if old := h.devices[p.Device]; old != nil {
			d.Resources = old.Resources
		}
		h.devices[p.Device] = &d
	case 'r':
		if err := h.LoadResource(val); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	default:
		return fmt.Errorf("key %q: not a drift-history key", k)
	}
	return nil
}

// encodeJSON encodes a part's value, v (plain data: encoding cannot fail);
// false if v is nil (the model holds no such part).
func encodeJSON(p Part, v any) ([]byte, bool) {
	if v == nil {
		return nil, false
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("projections: encode %s: %v", p.key(), err))
	}
	return b, true
}

// loadJSON decodes a stored part's value into v.
func loadJSON(p Part, val []byte, v any) error {
	if err := json.Unmarshal(val, v); err != nil {
		return fmt.Errorf("key %q: %w", p.key(), err)
	}
	return nil
}
