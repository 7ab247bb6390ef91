package events_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

// TestSameIsDeepEqual pins Resource.Same to reflect.DeepEqual on chosen
// changes; TestEveryKindComparesEveryField does it for every field of
// every declared kind.
func TestSameIsDeepEqual(t *testing.T) {
	is := is.New(t)
	yes, no := true, false
	base := func() []events.Resource {
		return []events.Resource{
			{ID: "f", Kind: events.KindFile, DriftPolicy: "report", File: &events.FileSpec{Path: "/a", Content: "x", Mode: "0644", Owner: "o", Group: "g"}},
			{ID: "u", Kind: events.KindSystemdUnit, SystemdUnit: &events.SystemdUnitSpec{Name: "a.service", Content: "c", Enabled: &yes, Active: &no}},
			{ID: "c", Kind: events.KindContainer, Container: &events.ContainerSpec{Name: "n", Image: "i", Command: []string{"a"}, Env: map[string]string{"A": "1"}, Ports: []string{"80:80"}, Volumes: []string{}, Restart: "always"}},
			{ID: "e", Kind: events.KindExec, Exec: &events.ExecSpec{Argv: []string{"/bin/true"}, Timeout: "1s"}},
			{ID: "g", Kind: "gpu", Raw: json.RawMessage(`{"v":1}`), Problem: "p"},
		}
	}
	changes := []func(r *events.Resource){
		func(r *events.Resource) { r.ID += "x" },
		func(r *events.Resource) { r.DriftPolicy = "correct" },
		func(r *events.Resource) { r.Kind = "other" },
		func(r *events.Resource) { r.Problem += "x" },
		func(r *events.Resource) { r.Raw = nil },
		func(r *events.Resource) { r.Raw = json.RawMessage{} },
		func(r *events.Resource) { r.Raw = json.RawMessage(`{"v":2}`) },
		func(r *events.Resource) { r.File = nil },
		func(r *events.Resource) { r.File = &events.FileSpec{} },
		func(r *events.Resource) {
			if r.File != nil {
				r.File.Owner = "x"
			}
		},
		func(r *events.Resource) { r.SystemdUnit = nil },
		func(r *events.Resource) {
			if r.SystemdUnit != nil {
				r.SystemdUnit.Enabled = nil
			}
		},
		func(r *events.Resource) {
			if r.SystemdUnit != nil {
				r.SystemdUnit.Active = &yes
			}
		},
		func(r *events.Resource) {
			if r.SystemdUnit != nil {
				r.SystemdUnit.Content = "d"
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Volumes = nil // nil and empty are apart
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Command = append(r.Container.Command, "b")
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Env = map[string]string{"A": "2"}
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Env = map[string]string{"B": "1"}
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Env = nil
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Ports[0] = "81:80"
			}
		},
		func(r *events.Resource) {
			if r.Container != nil {
				r.Container.Restart = ""
			}
		},
		func(r *events.Resource) {
			if r.Exec != nil {
				r.Exec.Argv = []string{}
			}
		},
		func(r *events.Resource) {
			if r.Exec != nil {
				r.Exec.Timeout = "2s"
			}
		},
		func(r *events.Resource) { r.Exec = &events.ExecSpec{} },
		func(r *events.Resource) {}, // no change: equal
	}
	for i := range base() {
		for _, change := range changes {
			a, b := base()[i], base()[i]
			change(&b)
			is.Equal(a.Same(&b), reflect.DeepEqual(a, b)) // same answer as reflect.DeepEqual
			is.Equal(b.Same(&a), reflect.DeepEqual(b, a))
		}
	}
}
