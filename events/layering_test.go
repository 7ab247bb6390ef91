package events_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// Only the adapter may touch JetStream: no non-test package under agent,
// projections or replay imports nats.go/jetstream or events/jsstore; they
// take the log through events' contracts (or the methods they use, declared
// where they are used). cmd wires the adapter in.
var forbidden = []string{
	"github.com/nats-io/nats.go/jetstream",
	"github.com/fleet-dev/fleet/events/jsstore",
}

// notYet are the packages still being moved onto the contract (issue 11):
// nothing now: the agent, the projection service and the time-travel index
// take the log through events.Store (or the few methods they use). Add a
// package here only while it is being moved; the test then keeps the rest so.
var notYet = []string{}

func TestOnlyTheAdapterImportsJetStream(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go tool to list packages")
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "../agent/...", "../projections/...", "../replay/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	seen := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, imports := fields[0], fields[1:]
		seen++
		var bad []string
		for _, f := range forbidden {
			if slices.Contains(imports, f) {
				bad = append(bad, f)
			}
		}
		switch {
		case len(bad) > 0 && !slices.Contains(notYet, pkg):
			t.Errorf("%s imports %v: take the log through events.Store (or the one or two methods used, declared in the package) and let cmd pass jsstore in", pkg, bad)
		case len(bad) == 0 && slices.Contains(notYet, pkg):
			t.Errorf("%s no longer imports JetStream: remove it from notYet so that it stays so", pkg)
		}
	}
	if seen < 5 {
		t.Fatalf("go list found %d packages under agent, projections and replay: the test lists the wrong folders", seen)
	}
}
