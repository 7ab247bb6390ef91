package events_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

// These tests iterate the declared kinds: a new kind is checked by them
// without being named here.

// filled returns k's sample with every field of its spec set, to values the
// standard decoder must unquote (escapes, non-ASCII), so that every field's
// fast decoding is compared.
func filled(t *testing.T, k *events.Kind) events.Resource {
	t.Helper()
	r := k.Sample("r1", 1)
	spec := specValue(t, &r)
	for i := range spec.NumField() {
		fill(t, spec.Field(i), i)
	}
	return r
}

// specValue returns the spec struct r holds (the one non-nil spec pointer).
func specValue(t *testing.T, r *events.Resource) reflect.Value {
	t.Helper()
	var spec reflect.Value
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct && !f.IsNil() {
			if spec.IsValid() {
				t.Fatalf("resource %s holds two specs", r.Kind)
			}
			spec = f.Elem()
		}
	}
	if !spec.IsValid() {
		t.Fatalf("sample of kind %s holds no spec", r.Kind)
	}
	return spec
}

func fill(t *testing.T, f reflect.Value, i int) {
	t.Helper()
	text := fmt.Sprintf("v%d \"é\"\n\t/x", i)
	switch {
	case f.Kind() == reflect.String:
		f.SetString(text)
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Bool:
		v := i%2 == 0
		f.Set(reflect.ValueOf(&v))
	case f.Kind() == reflect.Bool:
		f.SetBool(true)
	case f.Type() == reflect.TypeFor[[]string]():
		f.Set(reflect.ValueOf([]string{text, "", "b"}))
	case f.Type() == reflect.TypeFor[map[string]string]():
		f.Set(reflect.ValueOf(map[string]string{"A": text, "B_2": ""}))
	case f.Kind() == reflect.Int:
		f.SetInt(int64(i + 1))
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
		// a nested object (a health spec, its probes): every field set
		p := reflect.New(f.Type().Elem())
		for j := range p.Elem().NumField() {
			fill(t, p.Elem().Field(j), i*10+j)
		}
		f.Set(p)
	default:
		t.Fatalf("spec field of type %s: teach fill (and variants) to set it", f.Type())
	}
}

func manifestEvent(t *testing.T, rs ...events.Resource) []byte {
	t.Helper()
	m := events.Manifest{Resources: rs}
	e, err := events.New("pi-01", "", 1, "user:ops", &events.ManifestApplied{Manifest: m, Digest: m.Digest()})
	if err != nil {
		t.Fatal(err)
	}
	return must(json.Marshal(e))
}

func TestEveryKindFastDecodesAsEncodingJSONDoes(t *testing.T) {
	for _, k := range events.DeclaredKinds() {
		t.Run(k.Name, func(t *testing.T) {
			if !k.HasFastDecoder() {
				t.Fatalf("kind %s has no fast decoder: declare one with the kind, or every manifest with it takes the standard decoder", k.Name)
			}
			for _, r := range []events.Resource{k.Sample("a", 7), filled(t, k)} {
				b := manifestEvent(t, r, k.Sample("b", 8))
				if fast, payload := sameAsStandard(t, b); !fast || !payload {
					t.Fatalf("kind %s: the fast decoder gave up on %s", k.Name, b)
				}
				e, p, _ := events.FastDecode(b)
				got := p.(*events.ManifestApplied).Manifest.Resources[0]
				is.New(t).True(got.Known())
				is.New(t).True(reflect.DeepEqual(got, r)) // the spec written is the spec read
				is.New(t).Equal(e.Type, events.TypeManifestApplied)
			}
		})
	}
}

func TestEveryKindSampleIsValidAndRoundTrips(t *testing.T) {
	is := is.New(t)
	var rs []events.Resource
	for i, k := range events.DeclaredKinds() {
		r := k.Sample(fmt.Sprintf("r%d", i), i)
		is.Equal(r.Kind, k.Name)
		rs = append(rs, r)
	}
	m := events.Manifest{Resources: rs}
	is.NoErr(m.Validate())
	parsed, err := events.ParseManifest(must(json.Marshal(m)))
	is.NoErr(err)
	is.True(reflect.DeepEqual(parsed, m)) // strict parse gives what was written
	is.Equal(len(events.Kinds), len(events.DeclaredKinds()))
	for i, k := range events.DeclaredKinds() {
		is.Equal(events.Kinds[i], k.Name)
		found, ok := events.LookupKind(k.Name)
		is.True(ok && found == k)
	}
}

// Every spec pointer field of Resource is the spec of a declared kind.
func TestEveryResourceSpecIsADeclaredKind(t *testing.T) {
	declared := map[reflect.Type]string{}
	for _, k := range events.DeclaredKinds() {
		r := k.Sample("a", 1)
		declared[specValue(t, &r).Type()] = k.Name
	}
	typ := reflect.TypeFor[events.Resource]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct {
			if _, ok := declared[f.Type.Elem()]; !ok {
				t.Errorf("Resource.%s (%s) is no declared kind's spec: declare the kind in a kind_*.go and list it in kinds", f.Name, f.Type)
			}
		}
	}
}

// TestEveryKindComparesEveryField changes each field of each kind's spec in
// each way a field can differ and asks Resource.Same what reflect.DeepEqual
// answers.
func TestEveryKindComparesEveryField(t *testing.T) {
	for _, k := range events.DeclaredKinds() {
		t.Run(k.Name, func(t *testing.T) {
			proto := filled(t, k)
			spec := specValue(t, &proto)
			for i := range spec.NumField() {
				for v := range variants(t, spec.Field(i)) {
					a, b := filled(t, k), filled(t, k)
					v(specValue(t, &b).Field(i))
					if a.Same(&b) != reflect.DeepEqual(a, b) || b.Same(&a) != reflect.DeepEqual(b, a) {
						t.Fatalf("kind %s field %d: Same says %v, reflect.DeepEqual %v:\n%+v\n%+v", k.Name, i, a.Same(&b), reflect.DeepEqual(a, b), specValue(t, &a), specValue(t, &b))
					}
				}
			}
			a, b := filled(t, k), filled(t, k)
			is.New(t).True(a.Same(&b)) // equal when nothing changed
		})
	}
}

// variants returns the ways to change a field of f's type.
func variants(t *testing.T, f reflect.Value) func(yield func(func(reflect.Value)) bool) {
	t.Helper()
	var vs []func(reflect.Value)
	switch {
	case f.Kind() == reflect.String:
		vs = append(vs, func(v reflect.Value) { v.SetString(v.String() + "x") }, func(v reflect.Value) { v.SetString("") })
	case f.Kind() == reflect.Bool:
		vs = append(vs, func(v reflect.Value) { v.SetBool(!v.Bool()) })
	case f.Kind() == reflect.Int:
		vs = append(vs, func(v reflect.Value) { v.SetInt(v.Int() + 1) }, func(v reflect.Value) { v.SetInt(0) })
	case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Struct:
		// a nested object: gone, or each of its fields changed in each way
		vs = append(vs, func(v reflect.Value) { v.SetZero() })
		for j := range f.Elem().NumField() {
			for sub := range variants(t, f.Elem().Field(j)) {
				vs = append(vs, func(v reflect.Value) { sub(v.Elem().Field(j)) })
			}
		}
	case f.Kind() == reflect.Pointer:
		vs = append(vs, func(v reflect.Value) { v.SetZero() }, func(v reflect.Value) {
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(v.Elem())
			if p.Elem().Kind() == reflect.Bool {
				p.Elem().SetBool(!p.Elem().Bool())
			}
			v.Set(p)
		})
	case f.Kind() == reflect.Slice:
		vs = append(vs, func(v reflect.Value) { v.SetZero() }, func(v reflect.Value) { v.Set(reflect.MakeSlice(v.Type(), 0, 0)) },
			func(v reflect.Value) { v.Index(0).SetString("changed") },
			func(v reflect.Value) { v.Set(reflect.Append(v, reflect.ValueOf("more"))) })
	case f.Kind() == reflect.Map:
		vs = append(vs, func(v reflect.Value) { v.SetZero() }, func(v reflect.Value) { v.Set(reflect.MakeMap(v.Type())) },
			func(v reflect.Value) { v.SetMapIndex(reflect.ValueOf("A"), reflect.ValueOf("changed")) },
			func(v reflect.Value) { v.SetMapIndex(reflect.ValueOf("NEW"), reflect.ValueOf("")) })
	default:
		t.Fatalf("spec field of type %s: teach variants to change it", f.Type())
	}
	return func(yield func(func(reflect.Value)) bool) {
		for _, v := range vs {
			if !yield(v) {
				return
			}
		}
	}
}
