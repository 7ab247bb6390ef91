package events

import (
	"bytes"
	"fmt"
	"slices"
)

// A resource kind is declared once, in its own file (kind_file.go,
// kind_systemd.go, kind_container.go, kind_exec.go), and listed once in
// kinds below. The declaration carries everything the log knows about the
// kind: its manifest key (also the name the agent's reconciler registry
// uses), its spec type and where a Resource holds it, its validation rules,
// its fast decoder, and how two specs compare. Resource's JSON form,
// ParseManifest, Validate, the fast path of Decode and Resource.Same all
// go through the table; none of them names a kind.
//
// Adding a kind: a kind_<name>.go with its spec type and declaration, the
// spec's pointer field on Resource, one line in kinds, and its reconciler in
// agent/reconcile (registered in reconcile.Defaults). TestEveryKind... in
// kind_test.go then checks it without being told about it.

// kinds is every resource kind this build knows, in the order manifests'
// error messages list them.
var kinds = []*Kind{fileKind, systemdUnitKind, containerKind, execKind}

// Kinds lists the names of the resource kinds this build knows.
var Kinds = kindNames()

// Kind is the declaration of one resource kind. Declarations are fixed at
// start-up and safe for concurrent use.
type Kind struct {
	// Name is the kind's key in a manifest resource ("file"), and the name
	// its reconciler answers to (reconcile.Reconciler.Kind).
	Name string
	// OptIn kinds are reconciled only by an agent started to allow them
	// (exec: --allow-exec); fixtures leave them out of generated fleets.
	OptIn bool

	// field returns the address of r's spec pointer of this kind (a **T),
	// for encoding/json to decode into: null leaves it nil.
	field func(r *Resource) any
	// spec returns r's spec of this kind (a non-nil *T), or nil.
	spec func(r *Resource) any
	// alloc sets r's spec of this kind to a new zero spec and returns it (a *T).
	alloc func(r *Resource) any
	// validate checks the spec's rules that its JSON shape cannot, reporting
	// each broken one to c.
	validate func(r *Resource, c *specCheck)
	// fast decodes the spec object at b[i:] into r's spec (the fast path
	// of Decode) and returns the index after it, ok false to give up; nil
	// when the kind has none, which makes a manifest with the kind take the
	// standard decoder (and fails TestEveryKindFastDecodesAsEncodingJSONDoes).
	fast func(b []byte, i int, r *Resource) (next int, ok bool)
	// same reports whether a's and b's specs of this kind are equal as
	// reflect.DeepEqual says (nil and empty apart).
	same func(a, b *Resource) bool
	// sample is a resource of the kind, its content varying with version.
	sample func(id string, version int) Resource
	// health returns r's health spec (nil for none); nil for a kind that
	// takes no health spec (health*.go).
	health func(r *Resource) *HealthSpec
}

// kindSpec is what a kind_*.go file declares, typed by its spec.
type kindSpec[T any] struct {
	name     string
	optIn    bool
	field    func(r *Resource) **T
	validate func(x *T, c *specCheck)
	// fast is the spec's fast decoder, nil for none. It takes the input
	// and an index, not the *scan, so that the caller's scanner stays on
	// the stack (a pointer passed through a function value escapes): write
	// it as scan{b: b, i: i}, the spec's scan method, return s.i.
	fast   func(b []byte, i int, x *T) (next int, ok bool)
	same   func(x, y *T) bool
	sample func(id string, version int) *T
	// health, for a kind that takes a `health:` in its spec, returns the
	// address of the spec's health field; declare validates it as
	// <kind>.health.
	health func(x *T) **HealthSpec
}

// declare turns a typed declaration into the table's Kind.
func declare[T any](k kindSpec[T]) *Kind {
	d := &Kind{
		Name:  k.name,
		OptIn: k.optIn,
		field: func(r *Resource) any { return k.field(r) },
		spec: func(r *Resource) any {
			if p := *k.field(r); p != nil {
				return p
			}
			return nil
		},
		alloc: func(r *Resource) any {
			p := new(T)
			*k.field(r) = p
			return p
		},
		validate: func(r *Resource, c *specCheck) {
			k.validate(*k.field(r), c)
			if k.health != nil {
				validateHealth(*k.health(*k.field(r)), k.name+".health", c)
			}
		},
		same: func(a, b *Resource) bool { return samePtr(*k.field(a), *k.field(b), k.same) },
		sample: func(id string, version int) Resource {
			r := Resource{ID: id, Kind: k.name}
			*k.field(&r) = k.sample(id, version)
			return r
		},
	}
	if k.health != nil {
		d.health = func(r *Resource) *HealthSpec {
			if p := *k.field(r); p != nil {
				return *k.health(p)
			}
			return nil
		}
	}
	if k.fast != nil {
		d.fast = func(b []byte, i int, r *Resource) (int, bool) {
			p := new(T)
			*k.field(r) = p
			return k.fast(b, i, p)
		}
	}
	return d
}

// DeclaredKinds returns the declaration of every kind this build knows, in
// the order of Kinds. The slice is the caller's; the declarations are shared.
func DeclaredKinds() []*Kind { return slices.Clone(kinds) }

// LookupKind returns the declaration of the kind named name.
func LookupKind(name string) (*Kind, bool) {
	for _, k := range kinds {
		if k.Name == name {
			return k, true
		}
	}
	return nil, false
}

// kindOf is LookupKind for a key's bytes (no allocation).
func kindOf(name []byte) *Kind {
	for _, k := range kinds {
		if string(name) == k.Name {
			return k
		}
	}
	return nil
}

// Sample returns a valid resource of the kind with the given id; its
// content changes with version. Fixtures generate fleets from it.
func (k *Kind) Sample(id string, version int) Resource { return k.sample(id, version) }

// HasFastDecoder reports whether manifests with the kind can take Decode's
// fast path.
func (k *Kind) HasFastDecoder() bool { return k.fast != nil }

// specOf returns the kind and spec of the first kind (in table order) whose
// spec r holds, or nil, nil.
func (r *Resource) specOf() (*Kind, any) {
	for _, k := range kinds {
		if s := k.spec(r); s != nil {
			return k, s
		}
	}
	return nil, nil
}

// Same reports whether r and o are equal as reflect.DeepEqual says (every
// field, nil and empty apart), without reflection: the fleet fold compares
// every resource of every manifest with the last one's.
// TestSameIsDeepEqual pins it to reflect.DeepEqual for every declared kind.
func (r *Resource) Same(o *Resource) bool {
	if r.ID != o.ID || r.DriftPolicy != o.DriftPolicy || r.Kind != o.Kind || r.Problem != o.Problem || !sameBytes(r.Raw, o.Raw) {
		return false
	}
	for _, k := range kinds {
		if !k.same(r, o) {
			return false
		}
	}
	return true
}

// specCheck collects what Validate finds wrong with one manifest: the index
// of the resource being checked, and the manifest-wide state that rules
// across resources need.
type specCheck struct {
	i     int
	errs  []error
	paths map[string]int // clean file path → index of the resource that has it
}

// bad reports that field (relative to the resource: "file.mode") breaks a rule.
func (c *specCheck) bad(field, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: resources[%d].%s: %s", ErrInvalid, c.i, field, fmt.Sprintf(format, args...)))
}

func kindNames() []string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.Name
	}
	return names
}

// Comparison helpers for the kinds' same functions.

func samePtr[T any](x, y *T, same func(x, y *T) bool) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x == y || same(x, y)
}

func sameBool(x, y *bool) bool { return *x == *y }

func sameStrings(x, y []string) bool { return (x == nil) == (y == nil) && slices.Equal(x, y) }

func sameBytes(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }

func sameEnv(x, y map[string]string) bool {
	if (x == nil) != (y == nil) || len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if w, ok := y[k]; !ok || w != v {
			return false
		}
	}
	return true
}
