package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func TestParseManifestAcceptsEveryKind(t *testing.T) {
	is := is.New(t)
	m, err := events.ParseManifest([]byte(`
resources:
  - id: motd
    file: {path: /etc/motd, content: "hello\n", mode: "0644", owner: root}
  - id: nginx
    driftPolicy: report
    systemdUnit: {name: nginx.service, content: "[Service]\nExecStart=/usr/sbin/nginx\n", enabled: true}
  - id: web
    container: {image: nginx:1.27, ports: ["8080:80"], env: {A: b}, volumes: ["/srv:/usr/share/nginx/html:ro"], restart: always}
  - id: once
    exec: {argv: [/usr/bin/true], timeout: 30s}
`))
	is.NoErr(err)
	is.Equal(len(m.Resources), 4)
	is.Equal(m.Resources[0].Kind, events.KindFile)
	is.Equal(m.Resources[0].File.ModeOrDefault(), uint32(0o644))
	is.Equal(m.Resources[1].DriftPolicy, events.DriftReport)
	is.True(m.Resources[1].SystemdUnit.WantActive())
	is.Equal(m.Resources[2].ContainerName(), "fleet-web")
	is.Equal(m.Resources[3].Exec.TimeoutOrDefault().String(), "30s")
	// JSON is YAML too, and the canonical form round-trips to the same digest.
	j, err := events.ParseManifest([]byte(`{"resources":[{"id":"motd","file":{"path":"/etc/motd","content":"hello\n","mode":"0644","owner":"root"}}]}`))
	is.NoErr(err)
	is.Equal(j.Resources[0].SpecDigest(), m.Resources[0].SpecDigest())
}

// TestParseManifestRefusals: each bad manifest is refused with an error that
// wraps ErrInvalid and names the field and the rule.
func TestParseManifestRefusals(t *testing.T) {
	cases := []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"empty", ``, []string{"empty"}},
		{"not a map", `[1,2]`, []string{"must be an object"}},
		{"unknown top field", "resources: []\nextra: 1", []string{`field "extra"`, "unknown"}},
		{"resources not a list", "resources: 3", []string{"resources", "must be a list"}},
		{"no kind", "resources:\n  - id: a", []string{"resources[0]", "exactly one kind key"}},
		{"two kinds", "resources:\n  - id: a\n    file: {path: /a, content: x}\n    exec: {argv: [x]}", []string{"resources[0]", "exactly one kind key", "has 2"}},
		{"unknown kind", "resources:\n  - id: a\n    helm: {chart: x}", []string{"resources[0].helm", "unknown field"}},
		{"unknown spec field", "resources:\n  - id: a\n    file: {path: /a, content: x, colour: red}", []string{"resources[0].file", "colour"}},
		{"dotted id", "resources:\n  - id: a.b\n    file: {path: /a, content: x}", []string{"resources[0].id", `"a.b"`, "one subject token"}},
		{"wildcard id", "resources:\n  - id: '*'\n    file: {path: /a, content: x}", []string{"resources[0].id", "one subject token"}},
		{"gt id", "resources:\n  - id: '>'\n    file: {path: /a, content: x}", []string{"resources[0].id", "one subject token"}},
		{"empty id", "resources:\n  - file: {path: /a, content: x}", []string{"resources[0].id"}},
		{"long id", "resources:\n  - id: " + strings.Repeat("a", 65) + "\n    file: {path: /a, content: x}", []string{"resources[0].id", "1 to 64"}},
		{"duplicate id", "resources:\n  - id: a\n    file: {path: /a, content: x}\n  - id: a\n    file: {path: /b, content: x}", []string{"resources[1].id", "unique"}},
		{"relative path", "resources:\n  - id: a\n    file: {path: etc/motd, content: x}", []string{"resources[0].file.path", "absolute"}},
		{"dotdot path", "resources:\n  - id: a\n    file: {path: /etc/../../x, content: x}", []string{"resources[0].file.path", "'..'"}},
		{"root path", "resources:\n  - id: a\n    file: {path: /, content: x}", []string{"resources[0].file.path"}},
		{"same file twice", "resources:\n  - id: a\n    file: {path: /x, content: x}\n  - id: b\n    file: {path: //x, content: z}", []string{"resources[1].file.path", "one resource per file"}},
		{"bad mode", "resources:\n  - id: a\n    file: {path: /a, content: x, mode: '999'}", []string{"resources[0].file.mode", "octal"}},
		{"negative mode", "resources:\n  - id: a\n    file: {path: /a, content: x, mode: '-644'}", []string{"resources[0].file.mode"}},
		{"huge mode", "resources:\n  - id: a\n    file: {path: /a, content: x, mode: '777777'}", []string{"resources[0].file.mode"}},
		{"numeric mode", "resources:\n  - id: a\n    file: {path: /a, content: x, mode: 644}", []string{"resources[0].file.mode", "quote it"}},
		{"bad owner", "resources:\n  - id: a\n    file: {path: /a, content: x, owner: 'ro ot'}", []string{"resources[0].file.owner"}},
		{"bad drift policy", "resources:\n  - id: a\n    driftPolicy: ignore\n    file: {path: /a, content: x}", []string{"resources[0].driftPolicy"}},
		{"unit with slash", "resources:\n  - id: a\n    systemdUnit: {name: ../x.service, content: x}", []string{"resources[0].systemdUnit.name"}},
		{"empty unit", "resources:\n  - id: a\n    systemdUnit: {name: x.service}", []string{"resources[0].systemdUnit.content"}},
		{"bad image", "resources:\n  - id: a\n    container: {image: 'rm -rf /'}", []string{"resources[0].container.image"}},
		{"bad restart", "resources:\n  - id: a\n    container: {image: nginx, restart: sometimes}", []string{"resources[0].container.restart"}},
		{"bad port", "resources:\n  - id: a\n    container: {image: nginx, ports: ['80']}", []string{"resources[0].container.ports[0]"}},
		{"bad volume", "resources:\n  - id: a\n    container: {image: nginx, volumes: ['data:/x']}", []string{"resources[0].container.volumes[0]"}},
		{"bad env key", "resources:\n  - id: a\n    container: {image: nginx, env: {'A B': x}}", []string{"resources[0].container.env"}},
		{"shell string exec", "resources:\n  - id: a\n    exec: {argv: 'rm -rf /'}", []string{"resources[0].exec", "argv"}},
		{"empty argv", "resources:\n  - id: a\n    exec: {argv: []}", []string{"resources[0].exec.argv"}},
		{"negative timeout", "resources:\n  - id: a\n    exec: {argv: [x], timeout: -5s}", []string{"resources[0].exec.timeout"}},
		{"absurd timeout", "resources:\n  - id: a\n    exec: {argv: [x], timeout: 9999h}", []string{"resources[0].exec.timeout"}},
		{"null spec", "resources:\n  - id: a\n    file: null", []string{"resources[0].file", "not null"}},
		{"huge", "resources:\n  - id: a\n    file: {path: /a, content: '" + strings.Repeat("x", events.MaxManifestBytes) + "'}", []string{"bytes", "at most"}},
		{"deeply nested", "resources:\n  - id: a\n    exec: {argv: " + strings.Repeat("[", 50) + strings.Repeat("]", 50) + "}", []string{"nests", "at most"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			m, err := events.ParseManifest([]byte(c.doc))
			is.True(err != nil)
			is.True(errors.Is(err, events.ErrInvalid))
			is.Equal(len(m.Resources), 0) // nothing half-parsed comes back
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestNameLengthLimits: each name rule takes a name at its length limit and
// refuses one byte more (the limits are checked apart from the patterns).
func TestNameLengthLimits(t *testing.T) {
	cases := []struct {
		field    string
		resource func(string) string
		ok, long string
	}{
		{"systemdUnit.name", func(v string) string { return "systemdUnit: {name: " + v + ", content: x}" },
			strings.Repeat("u", 200) + ".service", strings.Repeat("u", 201) + ".service"},
		{"container.image", func(v string) string { return "container: {image: " + v + "}" },
			strings.Repeat("i", 255), strings.Repeat("i", 256)},
		{"container.name", func(v string) string { return "container: {image: nginx, name: " + v + "}" },
			strings.Repeat("n", 128), strings.Repeat("n", 129)},
		{"container.env", func(v string) string { return "container: {image: nginx, env: {" + v + ": x}}" },
			strings.Repeat("E", 128), strings.Repeat("E", 129)},
		{"file.owner", func(v string) string { return "file: {path: /a, content: x, owner: " + v + "}" },
			strings.Repeat("o", 32), strings.Repeat("o", 33)},
		{"file.owner", func(v string) string { return "file: {path: /a, content: x, owner: " + v + "}" },
			`"4294967295"`, `"42949672950"`},
	}
	for _, c := range cases {
		t.Run(c.field, func(t *testing.T) {
			is := is.New(t)
			doc := func(v string) []byte { return []byte("resources:\n  - id: a\n    " + c.resource(v)) }
			_, err := events.ParseManifest(doc(c.ok))
			is.NoErr(err)
			_, err = events.ParseManifest(doc(c.long))
			is.True(errors.Is(err, events.ErrInvalid))
			is.True(strings.Contains(err.Error(), c.field))
		})
	}
}

// TestLenientDecodingKeepsUnknownKinds: the agent's view of a manifest keeps
// a kind it does not know (so it can fail just that resource) instead of
// refusing the whole manifest.
func TestLenientDecodingKeepsUnknownKinds(t *testing.T) {
	is := is.New(t)
	var p events.ManifestApplied
	err := jsonUnmarshal(`{"manifest":{"resources":[
		{"id":"motd","file":{"path":"/etc/motd","content":"x","futureField":1}},
		{"id":"chart","helm":{"chart":"nginx"}},
		{"id":"twokinds","file":{"path":"/a","content":"x"},"exec":{"argv":["x"]}}]},"digest":"d"}`, &p)
	is.NoErr(err)
	rs := p.Manifest.Resources
	is.Equal(len(rs), 3)
	is.True(rs[0].Known())
	is.Equal(rs[0].File.Path, "/etc/motd")
	is.Equal(rs[1].Kind, "helm")
	is.True(!rs[1].Known())
	is.Equal(string(rs[1].Raw), `{"chart":"nginx"}`)
	is.True(rs[2].Problem != "")
	// An unknown kind survives a round trip (the agent stores the manifest it runs).
	b, err := jsonMarshal(rs[1])
	is.NoErr(err)
	is.Equal(b, `{"helm":{"chart":"nginx"},"id":"chart"}`)
}
