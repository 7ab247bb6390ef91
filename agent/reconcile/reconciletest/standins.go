package reconciletest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Standin packages, built by BuildStandins.
var standinPkgs = []string{
	"github.com/fleet-dev/fleet/fixtures/standins/systemctl",
	"github.com/fleet-dev/fleet/fixtures/standins/podman",
}

// BuildStandins builds the stand-in systemctl and podman into dir (call it
// once, from TestMain).
func BuildStandins(dir string) error {
	args := append([]string{"build", "-o", dir + string(filepath.Separator)}, standinPkgs...)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build stand-ins: %w: %s", err, out)
	}
	return nil
}

// UseStandins puts binDir (from BuildStandins) first on PATH for this test
// and gives the stand-ins a fresh state folder, which it returns. The real
// systemctl and podman are never reached: the stand-ins shadow them.
func UseStandins(t *testing.T, binDir string) string {
	t.Helper()
	state := t.TempDir()
	t.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FLEET_STANDIN_STATE", state)
	for _, name := range []string{"systemctl", "podman"} {
		p, err := exec.LookPath(name)
		if err != nil || filepath.Dir(p) != binDir {
			t.Fatalf("stand-in %s is not first on PATH (found %q, %v)", name, p, err)
		}
	}
	return state
}

// Calls returns the command lines the stand-ins ran, in order.
func Calls(t *testing.T, state string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "calls.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
