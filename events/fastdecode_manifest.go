package events

import "encoding/json"

// The fast decoder of ManifestApplied. Each resource kind's spec decoder
// is declared with the kind (kind_*.go).

// manifest parses a ManifestApplied payload whose resources each have a
// string id, an optional string driftPolicy and exactly one kind key: a
// known kind's spec with only its own fields (exact names, no nulls), or
// any value under a kind this build does not know (kept as Raw). That is
// what Resource.UnmarshalJSON gives for such input; anything else (a
// resource with a Problem, a case-folded or unknown field, a null) gives
// up, and Event.Payload decodes it.
func (s *scan) manifest() (*ManifestApplied, bool) {
	p := &ManifestApplied{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "manifest":
			ok = s.object(func(key []byte) bool {
				if string(key) != "resources" || !s.tok('[') {
					return false
				}
				p.Manifest.Resources = []Resource{}
				if s.tok(']') {
					return true
				}
				for {
					// decoded in place: a Resource of its own would
					// escape (the kinds' decoders are function values)
					p.Manifest.Resources = append(p.Manifest.Resources, Resource{})
					if !s.resource(&p.Manifest.Resources[len(p.Manifest.Resources)-1]) {
						return false
					}
					if s.tok(']') {
						return true
					}
					if !s.tok(',') {
						return false
					}
				}
			})
		case "digest":
			p.Digest, ok = s.text()
		case "signature":
			p.Signature, ok = s.text()
		case "keyId":
			p.KeyID, ok = s.text()
		}
		return ok
	})
	return p, ok
}

// resource parses one resource of a manifest (see manifest).
func (s *scan) resource(r *Resource) bool {
	kinds := 0 // counted, not read from r.Kind: a kind key may be "" (fuzz)
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			r.ID, ok = s.textShared() // the id events name the resource by
			return ok
		case "driftPolicy":
			r.DriftPolicy, ok = s.text()
			return ok
		}
		if kinds++; kinds > 1 {
			return false // a second kind key: the resource has a Problem
		}
		if k := kindOf(key); k != nil {
			r.Kind = k.Name
			// a kind without a fast decoder gives up: the standard
			// decoder gives its spec (never Raw for a known kind)
			if k.fast == nil {
				return false
			}
			var ok bool
			s.i, ok = k.fast(s.b, s.i, r)
			return ok
		}
		r.Kind = string(key)
		raw, ok := s.value(0)
		r.Raw = append(json.RawMessage(nil), raw...)
		return ok
	})
	return ok && r.Kind != ""
}
