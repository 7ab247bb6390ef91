package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestApplySelectorDryRunAndAllowEmpty: 'apply --selector --dry-run' prints
// each matching device's plan against its own generation (table and -o
// json) and writes nothing; an empty manifest that would empty a device is
// refused for the whole selector without --allow-empty, naming the devices,
// and applied to all with it.
func TestApplySelectorDryRunAndAllowEmpty(t *testing.T) {
	is := is.New(t)
	st, rs, natsFlag := labelFleet(t, map[string]map[string]string{
		"pi-01": {"site": "lab"},
		"pi-02": {"site": "lab"},
		"pi-03": {"site": "berlin"},
	})
	t.Setenv("FLEET_ACTOR", "ops")
	basic := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	_, code := replayCLI(t, "apply", "-f", basic, "--device", "pi-01", natsFlag)
	is.Equal(code, 0)
	waitCaughtUp(t, st, rs.Env.NATSURL)
	dir := t.TempDir()
	motd := filepath.Join(dir, "motd.yaml")
	is.NoErr(os.WriteFile(motd, []byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"changed\\n\", mode: 0644}\n"), 0o600))
	before, _ := st.LastSeq(context.Background())

	out, code := replayCLI(t, "apply", "-f", motd, "--selector", "site=lab", "--dry-run", natsFlag)
	is.Equal(code, 0)
	t.Log("\n" + out)
	for _, want := range []string{`2 devices match "site=lab" (dry run, nothing written)`,
		"device pi-01: plan for " + motd + " against generation 1", "~ change    file         motd", "- remove    file         app-config",
		"device pi-02: plan for " + motd + " against no manifest yet", "+ add       file         motd", "1 to add, 0 to change, 0 to remove; applying makes generation 1"} {
		is.True(strings.Contains(out, want)) // one plan per device, as apply --device --dry-run prints it
	}
	out, code = replayCLI(t, "apply", "-f", motd, "--selector", "site=lab", "--dry-run", "-o", "json", natsFlag)
	is.Equal(code, 0)
	var dj struct {
		DryRun  bool `json:"dryRun"`
		Devices []struct {
			Device  string     `json:"device"`
			Current int64      `json:"currentGeneration"`
			Plan    []PlanStep `json:"plan"`
			Add     int        `json:"add"`
			Change  int        `json:"change"`
			Remove  int        `json:"remove"`
		} `json:"devices"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &dj))
	is.True(dj.DryRun)
	is.Equal(len(dj.Devices), 2)
	is.Equal(dj.Devices[0].Device, "pi-01")
	is.Equal(dj.Devices[0].Current, int64(1))
	is.True(dj.Devices[0].Change == 1 && dj.Devices[0].Remove > 0)
	is.Equal([]int{dj.Devices[1].Add, dj.Devices[1].Change, dj.Devices[1].Remove}, []int{1, 0, 0})
	after, _ := st.LastSeq(context.Background())
	is.Equal(before, after) // a dry run writes nothing

	// empty: refused for the selector (pi-01 would lose everything), nothing written
	empty := filepath.Join(dir, "empty.yaml")
	is.NoErr(os.WriteFile(empty, []byte("resources: []\n"), 0o600))
	out, code = replayCLI(t, "apply", "-f", empty, "--selector", "site=lab", "--dry-run", natsFlag)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "this removes every resource of pi-01: applying it needs --allow-empty"))
	var stderr string
	stderr = captureStderr(t, func() { _, code = replayCLI(t, "apply", "-f", empty, "--selector", "site=lab", natsFlag) })
	is.Equal(code, 2)
	is.True(strings.Contains(stderr, "--allow-empty"))
	is.True(strings.Contains(stderr, "pi-01"))
	after, _ = st.LastSeq(context.Background())
	is.Equal(before, after)
	out, code = replayCLI(t, "apply", "-f", empty, "--selector", "site=lab", "--allow-empty", "-o", "json", natsFlag)
	is.Equal(code, 0)
	var aj struct {
		Devices []SelectorApplied `json:"devices"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &aj))
	is.Equal(len(aj.Devices), 2)
	for _, r := range aj.Devices {
		is.Equal(r.Result, appliedNew)
	}
}
