package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestApplyDryRunPrintsThePlan: --dry-run prints each resource added,
// changed or removed against the current generation (table and -o json)
// and writes nothing.
func TestApplyDryRunPrintsThePlan(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	t.Setenv("FLEET_ACTOR", "ops")
	url := "--nats=" + env.Server.URL()
	basic := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	_, code := replayCLI(t, "apply", "-f", basic, "--device", "pi-01", url)
	is.Equal(code, 0)

	v2 := filepath.Join(t.TempDir(), "v2.yaml")
	is.NoErr(os.WriteFile(v2, []byte(`resources:
  - id: motd
    file: {path: /etc/motd, content: "changed\n", mode: "0644"}
  - id: hosts-extra
    driftPolicy: report
    file: {path: /etc/hosts.d/fleet, content: "10.0.0.10 registry.local\n"}
  - id: web
    container: {name: web, image: "nginx:1.27"}
`), 0o644))
	out, code := replayCLI(t, "apply", "-f", v2, "--device", "pi-01", "--dry-run", url)
	is.Equal(code, 0)
	t.Log("\n" + out)
	for _, want := range []string{"against generation 1", "+ add       container    web", "~ change    file         motd",
		"- remove    file         app-config", "= unchanged file         hosts-extra", "1 to add, 1 to change, 1 to remove", "generation 2"} {
		is.True(strings.Contains(out, want)) // the plan names every step
	}
	out, code = replayCLI(t, "apply", "-f", v2, "--device", "pi-01", "--dry-run", "-o", "json", url)
	is.Equal(code, 0)
	var plan struct {
		Current int64 `json:"currentGeneration"`
		Plan    []PlanStep
		Add     int `json:"add"`
		Change  int `json:"change"`
		Remove  int `json:"remove"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &plan))
	is.Equal(plan.Current, int64(1))
	is.Equal([]int{plan.Add, plan.Change, plan.Remove}, []int{1, 1, 1})
	is.Equal(len(plan.Plan), 4)
	lm, err := env.Store.LastManifest(context.Background(), "pi-01")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(1)) // nothing written
}

// TestApplyEmptyManifestNeedsAllowEmpty: a manifest that removes every
// resource is refused without --allow-empty, naming what it would remove.
func TestApplyEmptyManifestNeedsAllowEmpty(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	t.Setenv("FLEET_ACTOR", "ops")
	url := "--nats=" + env.Server.URL()
	_, code := replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", "pi-01", url)
	is.Equal(code, 0)
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	is.NoErr(os.WriteFile(empty, []byte("resources: []\n"), 0o644))
	var out string
	stderr := captureStderr(t, func() { out, code = replayCLI(t, "apply", "-f", empty, "--device", "pi-01", url) })
	is.Equal(code, 2)
	is.True(strings.Contains(stderr, "--allow-empty"))
	is.True(strings.Contains(stderr, "motd"))
	lm, err := env.Store.LastManifest(context.Background(), "pi-01")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(1)) // refused: nothing written
	_, code = replayCLI(t, "apply", "-f", empty, "--device", "pi-01", "--allow-empty", url)
	is.Equal(code, 0)
	lm, err = env.Store.LastManifest(context.Background(), "pi-01")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(2))
	_ = out
}

// TestApplySecondFileRefused: -f twice is refused, not the first dropped.
func TestApplySecondFileRefused(t *testing.T) {
	is := is.New(t)
	basic := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	var code int
	stderr := captureStderr(t, func() { _, code = replayCLI(t, "apply", "-f", basic, "-f", basic, "--device", "pi-01") })
	is.Equal(code, 2)
	is.True(strings.Contains(stderr, "-f/--file given 2 times"))
}

// TestApplyWarnsOfAnUnregisteredDevice: applying to a device no agent ever
// registered as warns, and still applies.
func TestApplyWarnsOfAnUnregisteredDevice(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	t.Setenv("FLEET_ACTOR", "ops")
	var code int
	stderr := captureStderr(t, func() {
		_, code = replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", "pi-typo", "--nats="+env.Server.URL())
	})
	is.Equal(code, 0)
	is.True(strings.Contains(stderr, "device pi-typo has never registered"))
	lm, err := env.Store.LastManifest(context.Background(), "pi-typo")
	is.NoErr(err)
	is.Equal(lm.Generation, int64(1))
}
