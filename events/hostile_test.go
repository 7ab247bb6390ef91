package events_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/matryer/is"
	"sigs.k8s.io/yaml"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// hostileManifests are manifests an attacker or a careless operator could
// write, each with the words its refusal must contain (the field and the
// rule it breaks). Paths through a symlink out of the root cannot be seen in
// a manifest (the symlink is on the device): the file reconciler refuses
// them at apply time, see agent/reconcile TestFileEscapesAreRefused.
var hostileManifests = []struct {
	name string
	doc  string
	want []string
}{
	{"huge", "resources:\n" + strings.Repeat("  - id: x\n    file: {path: /x, content: "+strings.Repeat("a", 1000)+"}\n", 800),
		[]string{"bytes", "must be at most 786432"}},
	{"deeply nested", `{"resources":[{"id":"a","container":{"image":"x","env":{"A":` + strings.Repeat(`{"a":`, 50) + `1` + strings.Repeat(`}`, 50) + `}}}]}`,
		[]string{"nests", "levels deep", "must be at most 8"}},
	{"deeply nested lists", strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		[]string{"nests", "levels deep"}},
	{"too many resources", `{"resources":[` + strings.TrimSuffix(strings.Repeat(`{"id":"a","file":{"path":"/a"}},`, events.MaxResources+1), ",") + `]}`,
		[]string{"5001 resources", "at most 5000"}},
	{"yaml alias bomb", "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\nresources: [*h]\n",
		[]string{"excessive aliasing"}},
	{"duplicate ids", "resources:\n  - id: motd\n    file: {path: /etc/a}\n  - id: motd\n    file: {path: /etc/b}\n",
		[]string{"resources[1].id", `"motd" is also the id of resources[0]`, "must be unique"}},
	{"duplicate paths", "resources:\n  - id: a\n    file: {path: /etc/a}\n  - id: b\n    file: {path: /etc//a}\n",
		[]string{"resources[1].file.path", "also the path of resources[0]"}},
	{"id with a dot", "resources: [{id: a.b, file: {path: /a}}]", []string{"resources[0].id", `"a.b"`, "one subject token"}},
	{"id star", "resources: [{id: '*', file: {path: /a}}]", []string{"resources[0].id", `"*"`, "one subject token"}},
	{"id greater-than", "resources: [{id: '>', file: {path: /a}}]", []string{"resources[0].id", `">"`, "one subject token"}},
	{"id with a space", "resources: [{id: 'a b', file: {path: /a}}]", []string{"resources[0].id", "one subject token"}},
	{"id empty", "resources: [{id: '', file: {path: /a}}]", []string{"resources[0].id", "one subject token"}},
	{"id missing", "resources: [{file: {path: /a}}]", []string{"resources[0].id", "one subject token"}},
	{"id too long", "resources: [{id: " + strings.Repeat("a", 65) + ", file: {path: /a}}]", []string{"resources[0].id", "1 to 64 characters"}},
	{"id not a string", "resources: [{id: [a], file: {path: /a}}]", []string{"resources[0].id", "must be a string"}},
	{"path with ..", "resources: [{id: a, file: {path: /etc/../../root/.ssh/authorized_keys}}]", []string{"resources[0].file.path", "must not contain '..'"}},
	{"path relative", "resources: [{id: a, file: {path: etc/passwd}}]", []string{"resources[0].file.path", "must be absolute"}},
	{"path is root", "resources: [{id: a, file: {path: /}}]", []string{"resources[0].file.path", "must name a file"}},
	{"path with NUL", `{"resources":[{"id":"a","file":{"path":"/etc/a\u0000b"}}]}`, []string{"resources[0].file.path", "NUL"}},
	{"volume with ..", "resources: [{id: a, container: {image: nginx, volumes: ['/../etc:/x']}}]", []string{"resources[0].container.volumes[0]"}},
	{"unknown top-level field", "resources: []\nextra: 1\n", []string{`manifest field "extra"`, "unknown"}},
	{"unknown resource field", "resources: [{id: a, file: {path: /a}, when: always}]", []string{"resources[0].when", "unknown field"}},
	{"unknown spec field", "resources: [{id: a, file: {path: /a, setuid: true}}]", []string{"resources[0].file", `unknown field "setuid"`}},
	{"unknown kind", "resources: [{id: a, helm: {chart: x}}]", []string{"resources[0].helm", "unknown field"}},
	{"two kinds", "resources: [{id: a, file: {path: /a}, exec: {argv: [x]}}]", []string{"resources[0]", "exactly one kind key", "has 2"}},
	{"no kind", "resources: [{id: a}]", []string{"resources[0]", "exactly one kind key", "has 0"}},
	{"null spec", "resources: [{id: a, file: null}]", []string{"resources[0].file", "not null"}},
	{"mode negative", "resources: [{id: a, file: {path: /a, mode: '-1'}}]", []string{"resources[0].file.mode", "octal mode from 0000 to 7777"}},
	{"mode absurd", "resources: [{id: a, file: {path: /a, mode: '777777'}}]", []string{"resources[0].file.mode", "octal mode"}},
	{"mode decimal digits", "resources: [{id: a, file: {path: /a, mode: '0999'}}]", []string{"resources[0].file.mode", "octal mode"}},
	{"mode a decimal number", "resources: [{id: a, file: {path: /a, mode: 420}}]", []string{"resources[0].file.mode", "quote it"}},
	{"mode a number that is no octal mode", "resources: [{id: a, file: {path: /a, mode: 999}}]", []string{"resources[0].file.mode", "not an octal mode", "quote it"}},
	{"timeout negative", "resources: [{id: a, exec: {argv: [x], timeout: -5s}}]", []string{"resources[0].exec.timeout", "from 1ms to 1h0m0s"}},
	{"timeout zero", "resources: [{id: a, exec: {argv: [x], timeout: 0s}}]", []string{"resources[0].exec.timeout", "from 1ms"}},
	{"timeout absurd", "resources: [{id: a, exec: {argv: [x], timeout: 100000h}}]", []string{"resources[0].exec.timeout", "to 1h0m0s"}},
	{"timeout not a duration", "resources: [{id: a, exec: {argv: [x], timeout: forever}}]", []string{"resources[0].exec.timeout", "duration"}},
	{"exec shell string", "resources: [{id: a, exec: {argv: 'rm -rf /'}}]", []string{"resources[0].exec", "argv"}},
	{"exec empty argv", "resources: [{id: a, exec: {argv: []}}]", []string{"resources[0].exec.argv", "must name a program"}},
	{"unit name with slash", "resources: [{id: a, systemdUnit: {name: ../../x.service, content: x}}]", []string{"resources[0].systemdUnit.name", "no '/'"}},
	{"owner injection", "resources: [{id: a, file: {path: /a, owner: 'root; rm -rf /'}}]", []string{"resources[0].file.owner", "user name"}},
	{"env key injection", "resources: [{id: a, container: {image: x, env: {'A=B C': x}}}]", []string{"resources[0].container.env", "shell variable name"}},
	{"bad drift policy", "resources: [{id: a, driftPolicy: ignore, file: {path: /a}}]", []string{"resources[0].driftPolicy", "correct or report"}},
	{"resources not a list", "resources: {a: 1}", []string{"resources", "must be a list"}},
	{"not an object", "[1, 2]", []string{"manifest", "must be an object"}},
	{"empty", "   \n", []string{"empty"}},
	{"not yaml", "resources: [\n  - {", []string{"neither YAML nor JSON"}},
}

// TestHostileManifestsAreRefused: each hostile manifest is refused by
// ParseManifest with an error that names the problem and wraps ErrInvalid.
func TestHostileManifestsAreRefused(t *testing.T) {
	for _, c := range hostileManifests {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			_, err := events.ParseManifest([]byte(c.doc))
			is.True(err != nil)
			is.True(errors.Is(err, events.ErrInvalid))
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", abbrevErr(err), w)
				}
			}
		})
	}
}

// TestHostileManifestsWriteNothing: a hostile manifest that skips the strict
// parser (decoded leniently, as a buggy or malicious client could build it)
// is refused again by Apply, and nothing reaches the log.
func TestHostileManifestsWriteNothing(t *testing.T) {
	env := eventstest.Start(t, true)
	ctx := context.Background()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	tried := 0
	for _, c := range hostileManifests {
		var m events.Manifest
		if len(c.doc) > events.MaxManifestBytes || yaml.Unmarshal([]byte(c.doc), &m) != nil || len(m.Resources) == 0 || m.Validate() == nil {
			continue // not representable as a Manifest value (lenient decoding drops unknown spec fields)
		}
		tried++
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			_, err := events.Apply(ctx, env.Store, clock, "pi-01", m, "user:mallory", nil)
			is.True(errors.Is(err, events.ErrInvalid))
		})
	}
	if tried < 20 {
		t.Fatalf("only %d hostile manifests could be tried against Apply", tried)
	}
	for _, dev := range []string{"a.b", "*", ">", "pi 01", ""} {
		m, _ := events.ParseManifest([]byte("resources: [{id: a, file: {path: /a}}]"))
		_, err := events.Apply(ctx, env.Store, clock, dev, m, "user:mallory", nil)
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "one subject token") {
			t.Errorf("device %q: got %v, want a refusal naming the id rule", dev, err)
		}
	}
	last, err := env.Store.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last != 0 {
		t.Fatalf("log has %d messages after only hostile applies, want 0", last)
	}
}

func abbrevErr(err error) string {
	s := err.Error()
	if len(s) > 300 {
		return s[:300] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}
