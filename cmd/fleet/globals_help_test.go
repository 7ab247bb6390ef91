package main

import (
	"strings"
	"testing"
)

type helpExited struct{}

// helpOf returns what `fleet ARGS --help` prints.
func helpOf(t *testing.T, args ...string) string {
	t.Helper()
	old := exitAfterHelp
	exitAfterHelp = func(int) { panic(helpExited{}) }
	defer func() { exitAfterHelp = old }()
	return captureStdout(t, func() {
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(helpExited); !ok {
					panic(r)
				}
			}
		}()
		run(append(args, "--help"))
	})
}

// TestGlobalFlagsOnlyInTheHelpOfCommandsThatConnect: --nats, --creds and
// --tls-ca are listed by commands that connect to NATS, not by those that
// never do; given to one of those, they are warned about.
func TestGlobalFlagsOnlyInTheHelpOfCommandsThatConnect(t *testing.T) {
	for _, c := range [][]string{{"key", "new"}, {"key", "show"}, {"key"}, {"version"}, {"completion"}, {"demo"}, {"site"}, {"device", "list"}} {
		out := helpOf(t, c...)
		if !strings.Contains(out, "Flags:") {
			t.Fatalf("fleet %v --help printed no flags:\n%s", c, out)
		}
		flags := out[strings.Index(out, "Flags:"):] // examples may show another command's --nats
		for _, f := range []string{"--nats", "--creds", "--tls-ca"} {
			if strings.Contains(flags, f) {
				t.Errorf("fleet %s --help lists %s, which it ignores:\n%s", strings.Join(c, " "), f, out)
			}
		}
	}
	for _, c := range [][]string{{"get", "devices"}, {"apply"}, {"device", "revoke"}, {"device"}, {"rollout", "status"}, {"doctor"}, {"server"}, {"agent"}} {
		out := helpOf(t, c...)
		if !strings.Contains(out, "--nats") || !strings.Contains(out, "--creds") {
			t.Errorf("fleet %s --help does not list --nats and --creds:\n%s", strings.Join(c, " "), out)
		}
	}
	var code int
	stderr := captureStderr(t, func() {
		_ = captureStdout(t, func() { code = run([]string{"version", "--nats", "nats://elsewhere:4222"}) })
	})
	if code != 0 || !strings.Contains(stderr, "--nats has no effect on 'fleet version'") {
		t.Errorf("fleet version --nats: exit %d, stderr %q", code, stderr)
	}
}
