package projections

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// How the service persists the folds: one Pebble key per part that an event
// can change, so that a batch re-encodes only what it touched (a status
// change re-encodes one resource and the device's small header, not the
// whole device with its manifest).
//
//	f/<device>              Fleet: the device header (no manifest, no resources)
//	m/<device>              Fleet: the device's last manifest
//	g/<device>/<resource>   Fleet: one resource's state (absent: removed)
//	d/<device>              Drift: the device header (no histories)
//	r/<device>/<resource>   Drift: one resource's history
const (
	prefixFleet    = "f/"
	prefixManifest = "m/"
	prefixResource = "g/"
	prefixDrift    = "d/"
	prefixHistory  = "r/"
	prefixSkipped  = "s/" // + 20-digit sequence: why a message was skipped
)

// part names one persisted part of the folds.
type part struct {
	kind     byte // one of the prefixes' first letters: f, m, g, d, r
	device   string
	resource string
}

func (p part) key() []byte {
	k := make([]byte, 0, 2+len(p.device)+1+len(p.resource))
	k = append(k, p.kind, '/')
	k = append(k, p.device...)
	if p.resource != "" {
		k = append(k, '/')
		k = append(k, p.resource...)
	}
	return k
}

// touched adds the parts that applying e can change to dirty. A repeat
// that the folds skip adds parts too: writing them again writes the same
// bytes.
func touched(dirty map[part]struct{}, e events.Stored) {
	dirty[part{'f', e.Device, ""}] = struct{}{}
	dirty[part{'d', e.Device, ""}] = struct{}{}
	if e.Resource != "" {
		dirty[part{'g', e.Device, e.Resource}] = struct{}{}
		dirty[part{'r', e.Device, e.Resource}] = struct{}{}
	}
	if e.Type == events.TypeManifestApplied {
		dirty[part{'m', e.Device, ""}] = struct{}{}
		if p, err := e.Payload(); err == nil {
			for _, r := range p.(*events.ManifestApplied).Manifest.Resources {
				if events.ValidID(r.ID) {
					dirty[part{'g', e.Device, r.ID}] = struct{}{}
				}
			}
		}
	}
}

// allParts lists every part the folds hold (for writing a rebuilt store).
func allParts(f *Fleet, h *Drift) []part {
	var out []part
	for id, d := range f.devices {
		out = append(out, part{'f', id, ""})
		if d.Manifest != nil {
			out = append(out, part{'m', id, ""})
		}
		for r := range d.Resources {
			out = append(out, part{'g', id, r})
		}
	}
	for id, d := range h.devices {
		out = append(out, part{'d', id, ""})
		for r := range d.Resources {
			out = append(out, part{'r', id, r})
		}
	}
	return out
}

// encodePart returns the part's JSON, false if the folds no longer hold it
// (the key is then deleted).
func encodePart(f *Fleet, h *Drift, p part) ([]byte, bool) {
	var v any
	switch p.kind {
	case 'f':
		d := f.devices[p.device]
		if d == nil {
			return nil, false
		}
		hdr := *d
		hdr.Manifest, hdr.Resources = nil, nil
		v = &hdr
	case 'm':
		d := f.devices[p.device]
		if d == nil || d.Manifest == nil {
			return nil, false
		}
		v = d.Manifest
	case 'g':
		d := f.devices[p.device]
		if d == nil || d.Resources[p.resource] == nil {
			return nil, false
		}
		v = d.Resources[p.resource]
	case 'd':
		d := h.devices[p.device]
		if d == nil {
			return nil, false
		}
		v = d
	case 'r':
		d := h.devices[p.device]
		if d == nil || d.Resources[p.resource] == nil {
			return nil, false
		}
		v = d.Resources[p.resource]
	default:
		return nil, false
	}
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: plain data
		panic(fmt.Sprintf("projections: encode %s: %v", p.key(), err))
	}
	return b, true
}

// loadPart restores one part from its key and value. Headers must be loaded
// before the parts beneath them (the service loads by prefix in that order).
func loadPart(f *Fleet, h *Drift, key, val []byte) error {
	k := string(key)
	if len(k) < 3 || k[1] != '/' {
		return fmt.Errorf("key %q: not a read-model key", k)
	}
	dev, res, _ := strings.Cut(k[2:], "/")
	if !events.ValidID(dev) || (res != "" && !events.ValidID(res)) {
		return fmt.Errorf("key %q: bad device or resource id", k)
	}
	switch k[0] {
	case 'f':
		var d deviceState
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		d.Device, d.Manifest, d.Resources = dev, nil, map[string]*resourceState{}
		f.devices[dev] = &d
	case 'm':
		d := f.devices[dev]
		if d == nil {
			return fmt.Errorf("key %q: manifest of an unknown device", k)
		}
		var m manifestInfo
		if err := json.Unmarshal(val, &m); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		d.Manifest = &m
	case 'g':
		d := f.devices[dev]
		if d == nil || res == "" {
			return fmt.Errorf("key %q: resource of an unknown device", k)
		}
		var r resourceState
		if err := json.Unmarshal(val, &r); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		d.Resources[res] = &r
	case 'd':
		var d driftDevice
		if err := json.Unmarshal(val, &d); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
		d.Device = dev
		if old := h.devices[dev]; old != nil {
			d.Resources = old.Resources
		}
		h.devices[dev] = &d
	case 'r':
		if err := h.LoadResource(val); err != nil {
			return fmt.Errorf("key %q: %w", k, err)
		}
	default:
		return fmt.Errorf("key %q: not a read-model key", k)
	}
	return nil
}
