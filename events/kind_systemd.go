package events

import (
	"fmt"
	"strings"
)

// SystemdUnitSpec is a unit file with its wanted enablement and activity.
type SystemdUnitSpec struct {
	Name    string      `json:"name"`
	Content string      `json:"content"`
	Enabled *bool       `json:"enabled,omitempty"` // default true
	Active  *bool       `json:"active,omitempty"`  // default true
	Health  *HealthSpec `json:"health,omitempty"`  // probes and restart backoff (health.go)
}

// KindSystemdUnit is the manifest key of a systemd unit resource.
const KindSystemdUnit = "systemdUnit"

var systemdUnitKind = declare(kindSpec[SystemdUnitSpec]{
	name:     KindSystemdUnit,
	field:    func(r *Resource) **SystemdUnitSpec { return &r.SystemdUnit },
	validate: validateSystemdUnit,
	fast: func(b []byte, i int, x *SystemdUnitSpec) (int, bool) {
		s := scan{b: b, i: i}
		ok := s.unitSpec(x)
		return s.i, ok
	},
	same: func(x, y *SystemdUnitSpec) bool {
		return x.Name == y.Name && x.Content == y.Content &&
			samePtr(x.Enabled, y.Enabled, sameBool) && samePtr(x.Active, y.Active, sameBool) &&
			samePtr(x.Health, y.Health, sameHealth)
	},
	health: func(x *SystemdUnitSpec) **HealthSpec { return &x.Health },
	sample: func(id string, version int) *SystemdUnitSpec {
		return &SystemdUnitSpec{Name: "fleet-" + id + ".service", Content: fmt.Sprintf("[Service]\nExecStart=/usr/bin/app --v %d\n", version)}
	},
})

// Boolean defaults of a unit.
func (u SystemdUnitSpec) WantEnabled() bool { return u.Enabled == nil || *u.Enabled }
func (u SystemdUnitSpec) WantActive() bool  { return u.Active == nil || *u.Active }

// validateSystemdUnit: a unit file name and some content.
func validateSystemdUnit(u *SystemdUnitSpec, c *specCheck) {
	if !unitPattern.MatchString(u.Name) || strings.LastIndexByte(u.Name, '.') > 200 {
		c.bad("systemdUnit.name", "%q must be a unit file name such as nginx.service (no '/')", u.Name)
	}
	if u.Content == "" {
		c.bad("systemdUnit.content", "must not be empty")
	}
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
		case "health":
			u.Health, ok = s.health()
		}
		return ok
	})
}
