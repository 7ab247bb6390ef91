package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/alecthomas/kong"
)

// TestHelpExamples (issue 17: "`fleet COMMAND --help` examples that run as
// written against the demo") walks every command of the CLI, takes every
// line under "Examples:" of its --help that starts with "fleet ", and
//
//  1. parses each one with the CLI's own kong parser (flags, arguments,
//     enum values), without running it;
//  2. runs the read-only ones in-process (run(args), as a user's shell would
//     call fleet) against the demo's own server after the demo's story has
//     played (startDemo + play: 12 devices pi-01 … pi-12, the same manifests,
//     pi-12's sensor-calib failing), and wants exit 0 (fleet doctor: 0, or 1
//     when it reports a problem, as its help says) and, but for version,
//     doctor, rollout, project --status and replay --verify, some of the
//     demo's devices in what it prints.
//
// How a read-only example is run: shell words as sh splits them; a comment
// is dropped; "> FILE" writes what the command printed to FILE; a pipe into
// jq is run (when jq is installed) and must select something, other pipes
// are dropped. Only the connection is substituted: --nats gets the demo's
// NATS URL (added when the example has none and the command connects),
// doctor's --http the demo's HTTP address, and --creds is dropped (the demo
// runs without auth). Nothing else of the example is changed.
//
// Parsed only, never run:
//   - writes: apply, label, rollout start/pause/resume/abort/promote,
//     device add/revoke/reinstate, key new, import;
//   - long-running: server, agent, fleet-agent, demo, sim, site, project
//     (a service; 'project --status' runs, but not '--partition 1/2': the
//     demo runs no partition workers), rollout controller, replay --follow;
//   - completion (kong-completion exits the process; TestShellCompletion
//     runs the binary);
//   - examples that need a file the demo does not have: key show --key
//     ops.key, device list --data (reads a server's auth directory).
//
// The examples run in a temporary working directory, the exports first:
// 'export --out FILE' writes its file there (the file must show demo
// devices), and 'replay --verify --file fleet-log.ndjson' reads the one
// 'export > fleet-log.ndjson' wrote.
//
// The demo starts no rollout: the test starts one to the canary ring, and
// its id stands in for the placeholder 01KQ... of 'fleet rollout status'.
//
// Commands whose own --help has no example are logged, and each must have
// one in another's --help (the rollout subcommands: in 'fleet rollout --help').
func TestHelpExamples(t *testing.T) {
	type example struct{ from, line string }
	var examples []example
	var lacking []string
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, c := range n.Children {
			if c.Hidden {
				continue
			}
			path := strings.Fields(c.FullPath())[1:]
			lines := examplesOf(helpOf(t, path...))
			if len(lines) == 0 && len(c.Children) == 0 {
				lacking = append(lacking, strings.Join(path, " "))
			}
			for _, l := range lines {
				examples = append(examples, example{strings.Join(path, " "), l})
			}
			walk(c)
		}
	}
	walk(newTestParser(t).Model.Node)
	if len(examples) < 50 {
		t.Fatalf("found only %d examples", len(examples))
	}
	sort.Strings(lacking)
	t.Logf("%d examples; commands whose --help has no example of their own: %s", len(examples), strings.Join(lacking, ", "))
	// Each of those has one in its group's --help (fleet rollout --help).
	for _, cmd := range lacking {
		shown := false
		for _, ex := range examples {
			shown = shown || strings.HasPrefix(ex.line+" ", "fleet "+cmd+" ")
		}
		if !shown {
			t.Errorf("fleet %s: no example in its --help nor in its group's", cmd)
		}
	}

	// 1. every example parses; the check itself refuses what kong refuses.
	for _, bad := range []string{"get devices --no-such-flag", "explain pi-01", "get devices --status nope", "inspect pi-01 --seq x"} {
		if parseOnly(t, strings.Fields(bad)) == nil {
			t.Fatalf("fleet %s parsed", bad)
		}
	}
	type runnable struct{ from, line string }
	var toRun []runnable
	seen := map[string]bool{}
	for _, ex := range examples {
		for i, cmd := range pipeline(t, ex.line) {
			if len(cmd) == 0 || (cmd[0] != "fleet" && cmd[0] != "fleet-agent") {
				continue // jq and the like
			}
			args, _ := redirected(cmd[1:])
			if cmd[0] == "fleet-agent" {
				args = append([]string{"agent"}, args...) // the same flags (agent/agentcli)
			}
			if err := parseOnly(t, sampleConfig(args)); err != nil {
				t.Errorf("fleet %s --help: example %q does not parse: %v", ex.from, ex.line, err)
				continue
			}
			if i == 0 && cmd[0] == "fleet" && readOnly(args) && !seen[ex.line] {
				seen[ex.line] = true
				toRun = append(toRun, runnable(ex))
			}
		}
	}
	if t.Failed() || testing.Short() {
		return
	}

	// 2. the read-only ones run against the demo.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dc := &DemoCmd{Devices: 12, HTTP: "127.0.0.1:0", RelaxedSync: true}
	d, err := startDemo(ctx, dc, t.TempDir(), io.Discard)
	if d != nil {
		defer d.stop()
	}
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := d.play(ctx); err != nil {
		t.Fatal(err)
	}
	played := time.Since(start)
	// The demo starts no rollout: one to the canary ring stands in for the
	// examples' placeholder id 01KQ....
	rolloutID, rolloutStart := ulid.Make().String(), time.Now()
	natsFlag := "--nats=" + d.rs.Env.NATSURL
	manifest, err := filepath.Abs(filepath.Join("..", "..", "fixtures", "manifests", "demo", "rollout.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if out, code := replayCLI(t, "rollout", "start", "-f", manifest,
		"--selector", "ring=canary", "--id", rolloutID, natsFlag); code != 0 {
		t.Fatalf("rollout start: exit %d: %s", code, out)
	}
	// "--at 10s" means the demo's first ten seconds are on the log, and
	// "rollout status ID --at 5s" that the rollout is older than that.
	for time.Since(d.t0) < 12*time.Second || time.Since(rolloutStart) < 6*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("demo story played in %s; running %d read-only examples", played.Round(100*time.Millisecond), len(toRun))
	sort.SliceStable(toRun, func(i, j int) bool {
		return strings.HasPrefix(toRun[i].line, "fleet export ") && !strings.HasPrefix(toRun[j].line, "fleet export ")
	})
	for _, ex := range toRun {
		cmds := pipeline(t, ex.line)
		args, redirect := redirected(cmds[0][1:])
		args = connectTo(args, d.rs.Env.NATSURL, "http://"+d.rs.Env.HTTPAddr)
		for i, a := range args {
			if a == "01KQ..." {
				args[i] = rolloutID
			}
		}
		var out string
		var code int
		stderr := captureStderr(t, func() { out, code = replayCLI(t, args...) })
		t.Logf("exit %d: fleet %s", code, strings.Join(args, " "))
		want := code == 0 || (args[0] == "doctor" && code == 1)
		if redirect != "" {
			if err := os.WriteFile(redirect, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(cmds) > 1 && cmds[1][0] == "jq" && code == 0 {
			if _, err := exec.LookPath("jq"); err == nil {
				jq := exec.Command("jq", cmds[1][1:]...)
				jq.Stdin = strings.NewReader(out)
				b, err := jq.Output()
				if err != nil || len(bytes.TrimSpace(b)) == 0 {
					t.Errorf("example %q: jq selects nothing of what fleet printed (%v)", ex.line, err)
				}
			}
		}
		if file := outFile(args); file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Errorf("example %q: %v", ex.line, err)
			}
			out += string(b)
		}
		// What reads the fleet shows some of the demo's devices.
		showsDevices := strings.Contains(out, "pi-") || args[0] == "version" || args[0] == "doctor" || args[0] == "rollout" || args[0] == "project" || slices.Contains(args, "--verify")
		if !want || strings.TrimSpace(out) == "" || !showsDevices {
			t.Errorf("fleet %s --help: example %q (run as fleet %s): exit %d\nstdout:\n%s\nstderr:\n%s",
				ex.from, ex.line, strings.Join(args, " "), code, out, stderr)
		}
	}
}

// newTestParser builds the parser as run does.
func newTestParser(t *testing.T) *kong.Kong {
	t.Helper()
	var cli CLI
	opts := []kong.Option{
		kong.Name("fleet"),
		kong.Exit(func(int) { t.Fatal("kong exited while parsing") }),
		kong.Vars{"version": "fleet " + buildInfo().String(), "default_nats": DefaultNATS},
		kong.BindTo(context.Background(), (*context.Context)(nil)),
	}
	for _, c := range commands {
		opts = append(opts, kong.DynamicCommand(c.name, c.help, c.group, c.cmd))
	}
	p, err := kong.New(&cli, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// parseOnly parses args as fleet would, without running the command.
func parseOnly(t *testing.T, args []string) error {
	_, err := newTestParser(t).Parse(args)
	return err
}

// examplesOf returns the lines under "Examples:" of a help text that start
// with "fleet " or "fleet-agent ", a trailing backslash joining the next line.
func examplesOf(help string) []string {
	var out []string
	in := false
	lines := strings.Split(help, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(l, "Examples:"):
			in = true
			continue
		case !in:
			continue
		case l == "":
			continue
		case !strings.HasPrefix(lines[i], " "):
			in = false // the next section (Flags:, Arguments:)
			continue
		}
		if !strings.HasPrefix(l, "fleet ") && !strings.HasPrefix(l, "fleet-agent ") {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, `\`) + " " + strings.TrimSpace(lines[i])
		}
		out = append(out, l)
	}
	return out
}

// pipeline splits a shell line into the words of each command of a
// pipeline, as sh does for what examples use: quotes, comments, "> FILE".
func pipeline(t *testing.T, line string) [][]string {
	var cmds [][]string
	var cur []string
	var word strings.Builder
	inWord, redirect := false, false
	flush := func() {
		if inWord {
			if redirect {
				redirect = false // the file a "> FILE" names, kept as ">FILE"
				cur = append(cur, ">"+word.String())
			} else {
				cur = append(cur, word.String())
			}
		}
		word.Reset()
		inWord = false
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(line[i+1:], c)
			if j < 0 {
				t.Fatalf("unbalanced quote in %q", line)
			}
			word.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			i = len(line)
		case c == '|':
			flush()
			cmds, cur = append(cmds, cur), nil
		case c == '>':
			flush()
			redirect = true
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return append(cmds, cur)
}

// readOnly: what a run of the example only reads (see TestHelpExamples).
func readOnly(args []string) bool {
	has := func(flags ...string) bool {
		for _, a := range args {
			for _, f := range flags {
				if a == f || strings.HasPrefix(a, f+"=") {
					return true
				}
			}
		}
		return false
	}
	switch args[0] {
	case "get", "drift", "explain", "inspect", "doctor", "version":
		return true
	case "replay":
		return !has("--follow")
	case "export":
		return true
	case "project":
		return has("--status") && !has("--partition") // the demo runs no partition workers
	case "rollout":
		return len(args) > 1 && (args[1] == "list" || args[1] == "status")
	}
	return false
}

// connectTo substitutes the connection of an example: --nats, doctor's
// --http, --creds dropped; --nats added where the command connects.
func connectTo(args []string, natsURL, httpURL string) []string {
	var out []string
	hasNATS := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--nats" || a == "--creds" || (a == "--http" && args[0] == "doctor"):
			i++
			fallthrough
		case strings.HasPrefix(a, "--nats=") || strings.HasPrefix(a, "--creds=") || (strings.HasPrefix(a, "--http=") && args[0] == "doctor"):
			switch {
			case strings.HasPrefix(a, "--nats"):
				out, hasNATS = append(out, "--nats="+natsURL), true
			case strings.HasPrefix(a, "--http"):
				out = append(out, "--http="+httpURL)
			}
			continue
		}
		out = append(out, a)
	}
	if !hasNATS && args[0] != "version" {
		out = append(out, "--nats="+natsURL)
	}
	return out
}

// sampleConfig: an agent example's --config /etc/fleet/agent.yaml is read
// while parsing; the repository's sample (deploy/systemd/agent.yaml, which
// the example names) stands in for it.
func sampleConfig(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if a == "--config" && i+1 < len(out) && out[i+1] == "/etc/fleet/agent.yaml" {
			out[i+1] = filepath.Join("..", "..", "deploy", "systemd", "agent.yaml")
		}
	}
	return out
}

// outFile is the file an export example writes (--out FILE, -O FILE).
func outFile(args []string) string {
	for i, a := range args {
		if (a == "--out" || a == "-O") && i+1 < len(args) {
			return args[i+1]
		}
		if f, ok := strings.CutPrefix(a, "--out="); ok {
			return f
		}
	}
	return ""
}

// redirected splits a "> FILE" off a command's words.
func redirected(words []string) (args []string, file string) {
	for _, w := range words {
		if f, ok := strings.CutPrefix(w, ">"); ok {
			file = f
			continue
		}
		args = append(args, w)
	}
	return args, file
}
