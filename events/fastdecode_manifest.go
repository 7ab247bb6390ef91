package events

import "encoding/json"

// Fast decoders for ManifestApplied and the resource specs it carries.

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
					var r Resource
					if !s.resource(&r) {
						return false
					}
					p.Manifest.Resources = append(p.Manifest.Resources, r)
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
		if r.Kind != "" {
			return false // a second kind key: the resource has a Problem
		}
		r.Kind = string(key)
		switch string(key) {
		case KindFile:
			r.File = &FileSpec{}
			return s.fileSpec(r.File)
		case KindSystemdUnit:
			r.SystemdUnit = &SystemdUnitSpec{}
			return s.unitSpec(r.SystemdUnit)
		case KindContainer:
			r.Container = &ContainerSpec{}
			return s.containerSpec(r.Container)
		case KindExec:
			r.Exec = &ExecSpec{}
			return s.execSpec(r.Exec)
		}
		raw, ok := s.value(0)
		r.Raw = append(json.RawMessage(nil), raw...)
		return ok
	})
	return ok && r.Kind != ""
}

func (s *scan) fileSpec(f *FileSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "path":
			f.Path, ok = s.text()
		case "content":
			f.Content, ok = s.text()
		case "mode":
			f.Mode, ok = s.text()
		case "owner":
			f.Owner, ok = s.text()
		case "group":
			f.Group, ok = s.text()
		}
		return ok
	})
}

func (s *scan) unitSpec(u *SystemdUnitSpec) bool {
	return s.object(func(key []byte) bool {
		var ok, v bool
		switch string(key) {
		case "name":
			u.Name, ok = s.text()
		case "content":
			u.Content, ok = s.text()
		case "enabled":
			if v, ok = s.bool(); ok {
				u.Enabled = &v
			}
		case "active":
			if v, ok = s.bool(); ok {
				u.Active = &v
			}
		}
		return ok
	})
}

func (s *scan) containerSpec(c *ContainerSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			c.Name, ok = s.text()
		case "image":
			c.Image, ok = s.text()
		case "command":
			c.Command, ok = s.texts()
		case "ports":
			c.Ports, ok = s.texts()
		case "volumes":
			c.Volumes, ok = s.texts()
		case "restart":
			c.Restart, ok = s.text()
		case "env":
			c.Env = map[string]string{}
			ok = s.object(func(key []byte) bool {
				v, ok := s.text()
				c.Env[string(key)] = v
				return ok
			})
		}
		return ok
	})
}

func (s *scan) execSpec(e *ExecSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "argv":
			e.Argv, ok = s.texts()
		case "timeout":
			e.Timeout, ok = s.text()
		}
		return ok
	})
}
