package reconcile_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
)

// standinBin holds the stand-in systemctl and podman built once for this package.
var standinBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleet-standins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := reconciletest.BuildStandins(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	standinBin = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
