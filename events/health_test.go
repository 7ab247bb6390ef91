package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func container(health string) string {
	return "resources:\n  - id: web\n    container:\n      image: nginx:1.27\n      health:\n" + health
}

// hostileHealth are health specs that must be refused, each with the words
// of its refusal: the field and the rule.
var hostileHealth = []struct {
	name string
	doc  string
	want []string
}{
	{"shell string", container("        liveness: {exec: {argv: [\"sh -c curl -f localhost || exit 1\"]}}\n"),
		[]string{"resources[0].container.health.liveness.exec.argv[0]", "is a shell string"}},
	{"shell -c", container("        liveness: {exec: {argv: [/bin/sh, -c, \"curl localhost\"]}}\n"),
		[]string{"container.health.liveness.exec.argv", "runs a shell command line"}},
	{"empty argv", container("        readiness: {exec: {argv: []}}\n"),
		[]string{"container.health.readiness.exec.argv", "never a shell string"}},
	{"argv as a string", container("        readiness: {exec: {argv: \"curl -f localhost\"}}\n"),
		[]string{"container", "argv", "string"}},
	{"period too short", container("        readiness: {tcp: {port: 80}, period: 1ns}\n"),
		[]string{"container.health.readiness.period", `"1ns" must be a duration from 1s to 1h0m0s`}},
	{"period absurd", container("        readiness: {tcp: {port: 80}, period: 10000h}\n"),
		[]string{"container.health.readiness.period", "from 1s to 1h0m0s"}},
	{"timeout over period", container("        readiness: {tcp: {port: 80}, period: 2s, timeout: 5s}\n"),
		[]string{"container.health.readiness.timeout", "must not exceed the period 2s"}},
	{"url off the device", container("        readiness: {http: {url: \"http://10.0.0.5/healthz\"}}\n"),
		[]string{"container.health.readiness.http.url", "must be on the device"}},
	{"url with a name", container("        readiness: {http: {url: \"http://evil.example/healthz\"}}\n"),
		[]string{"container.health.readiness.http.url", "loopback"}},
	{"url not http", container("        readiness: {http: {url: \"file:///etc/shadow\"}}\n"),
		[]string{"container.health.readiness.http.url", "http:// or https://"}},
	{"url credentials", container("        readiness: {http: {url: \"http://u:p@127.0.0.1/\"}}\n"),
		[]string{"container.health.readiness.http.url", "credentials"}},
	{"bad status range", container("        readiness: {http: {url: \"http://127.0.0.1/\", status: 500-200}}\n"),
		[]string{"container.health.readiness.http.status", "from 100 to 599"}},
	{"tcp off the device", container("        liveness: {tcp: {host: 192.168.1.1, port: 22}}\n"),
		[]string{"container.health.liveness.tcp.host", "must be on the device"}},
	{"tcp port", container("        liveness: {tcp: {port: 70000}}\n"),
		[]string{"container.health.liveness.tcp.port", "from 1 to 65535"}},
	{"unknown probe kind", container("        liveness: {grpc: {port: 9000}}\n"),
		[]string{"container.health.liveness.grpc", "unknown probe field or kind", "allowed: exec, http, tcp"}},
	{"unknown health field", container("        livenes: {tcp: {port: 80}}\n"),
		[]string{"container.health.livenes", "unknown field", "allowed: readiness, liveness, startup, restartBackoff"}},
	{"unknown http field", container("        readiness: {http: {url: \"http://127.0.0.1/\", method: POST}}\n"),
		[]string{"container.health.readiness.http.method", "unknown field", "allowed: url, status"}},
	{"two probe kinds", container("        readiness: {tcp: {port: 80}, http: {url: \"http://127.0.0.1/\"}}\n"),
		[]string{"container.health.readiness", "exactly one of exec, http, tcp (has 2)"}},
	{"no probe kind", container("        readiness: {period: 5s}\n"),
		[]string{"container.health.readiness", "exactly one of exec, http, tcp (has 0)"}},
	{"liveness success threshold", container("        liveness: {tcp: {port: 80}, successThreshold: 2}\n"),
		[]string{"container.health.liveness.successThreshold", "must be 1 for liveness and startup"}},
	{"startup success threshold", container("        startup: {tcp: {port: 80}, successThreshold: 3}\n"),
		[]string{"container.health.startup.successThreshold", "must be 1 for liveness and startup"}},
	{"failure threshold", container("        readiness: {tcp: {port: 80}, failureThreshold: 100000}\n"),
		[]string{"container.health.readiness.failureThreshold", "from 1 to 100"}},
	{"backoff cap", container("        restartBackoff: {max: 1h}\n"),
		[]string{"container.health.restartBackoff.max", "from 1s to 5m0s"}},
	{"backoff initial", container("        restartBackoff: {initial: 1ns}\n"),
		[]string{"container.health.restartBackoff.initial", "from 100ms to 1m0s"}},
	{"backoff reset", container("        restartBackoff: {resetAfter: 1s}\n"),
		[]string{"container.health.restartBackoff.resetAfter", "from 1m0s to 24h0m0s"}},
	{"unit probe off the device", "resources:\n  - id: u\n    systemdUnit:\n      name: a.service\n      content: \"[Service]\\n\"\n      health: {readiness: {http: {url: \"http://[2001:db8::1]/\"}}}\n",
		[]string{"systemdUnit.health.readiness.http.url", "must be on the device"}},
}

func TestHostileHealthSpecsAreRefused(t *testing.T) {
	for _, tc := range hostileHealth {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.ParseManifest([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.doc)
			}
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestHealthSpecParsesWithKubeletDefaults(t *testing.T) {
	is := is.New(t)
	m, err := events.ParseManifest([]byte(container(`        readiness: {http: {url: "http://127.0.0.1:8080/healthz", status: "200"}, period: 2s}
        liveness: {exec: {argv: [/usr/bin/test, -f, /run/ok]}, failureThreshold: 5}
        startup: {tcp: {port: 8080}, initialDelay: 3s}
        restartBackoff: {initial: 2s, max: 2m}
`)))
	is.NoErr(err)
	r := m.Resources[0]
	h := r.Health()
	is.True(h != nil)
	is.Equal(h.Readiness.Kind(), "http")
	is.Equal(h.Readiness.Timing(), events.Timing{Period: 2 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 3})
	is.Equal(h.Liveness.Timing(), events.Timing{Period: 10 * time.Second, Timeout: time.Second, SuccessThreshold: 1, FailureThreshold: 5})
	is.Equal(h.Startup.Timing().InitialDelay, 3*time.Second)
	lo, hi := h.Readiness.HTTP.StatusRange()
	is.Equal([2]int{lo, hi}, [2]int{200, 200})
	initial, max, reset := h.Backoff()
	is.Equal([3]time.Duration{initial, max, reset}, [3]time.Duration{2 * time.Second, 2 * time.Minute, 10 * time.Minute})
	initial, max, reset = (*events.HealthSpec)(nil).Backoff()
	is.Equal([3]time.Duration{initial, max, reset}, [3]time.Duration{time.Second, time.Minute, 10 * time.Minute})
	// the digest covers health: a probe change is a spec change
	other, err := events.ParseManifest([]byte(container("        readiness: {tcp: {port: 8080}}\n")))
	is.NoErr(err)
	is.True(r.SpecDigest() != other.Resources[0].SpecDigest())
	// the kinds that take health; the others refuse it as an unknown field
	_, err = events.ParseManifest([]byte("resources:\n  - id: f\n    file: {path: /a, content: x, health: {}}\n"))
	is.True(err != nil && strings.Contains(err.Error(), `unknown field "health"`))
}
