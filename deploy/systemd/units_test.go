// Package systemd holds the systemd units and the sample agent config; its
// test checks them with systemd-analyze.
package systemd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnitsVerify runs `systemd-analyze verify` on both units, copied with
// ExecStart pointed at freshly built binaries, and fails on any complaint
// (verify exits 0 on an unknown key or a bad value: it only warns).
func TestUnitsVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds both binaries")
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed: the units' syntax is not checked here (apt-get install systemd)")
	}
	dir := t.TempDir()
	bins := map[string]string{"fleet": "../../cmd/fleet", "fleet-agent": "../../cmd/fleet-agent"}
	for name, pkg := range bins {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", name, err, out)
		}
	}
	for _, unit := range []string{"fleet-server.service", "fleet-agent.service"} {
		b, err := os.ReadFile(unit)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if !strings.Contains(text, "ExecStart=/usr/local/bin/") {
			t.Fatalf("%s: ExecStart does not run a binary from /usr/local/bin", unit)
		}
		text = strings.ReplaceAll(text, "/usr/local/bin/", dir+"/")
		path := filepath.Join(dir, unit)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", path).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(out), "System has not been booted with systemd") {
			t.Skipf("systemd-analyze cannot run in this container: %s", out)
		}
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// TestAgentUnitUsesTheConfigFile: the agent unit reads /etc/fleet/agent.yaml
// and gets its credentials from systemd's credential store, and nothing
// refers to the old environment file.
func TestAgentUnitUsesTheConfigFile(t *testing.T) {
	b, err := os.ReadFile("fleet-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"--config /etc/fleet/agent.yaml",
		"LoadCredential=device.creds:/etc/fleet/device.creds",
		"--creds ${CREDENTIALS_DIRECTORY}/device.creds",
		"StateDirectory=fleet-agent",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("fleet-agent.service lacks %q", want)
		}
	}
	for _, f := range []string{"fleet-agent.service", "fleet-server.service", "agent.yaml"} {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "agent.env") || strings.Contains(string(b), "EnvironmentFile") {
			t.Errorf("%s still refers to an environment file", f)
		}
	}
}
