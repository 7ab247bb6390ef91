package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestMemoryLimitDefaultAndOperatorOverride: with no GOMEMLIMIT the agent
// sets its soft memory limit to defaultMemoryLimit; with one set (the
// runtime has applied it) the agent leaves it as it is.
func TestMemoryLimitDefaultAndOperatorOverride(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })

	debug.SetMemoryLimit(math.MaxInt64)
	setMemoryLimit(func(string) string { return "" })
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Errorf("no GOMEMLIMIT: limit %d, want %d", got, defaultMemoryLimit)
	}

	debug.SetMemoryLimit(64 << 20) // as the runtime does for GOMEMLIMIT=64MiB
	setMemoryLimit(func(k string) string {
		if k == "GOMEMLIMIT" {
			return "64MiB"
		}
		return ""
	})
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("GOMEMLIMIT=64MiB: limit %d, want the operator's %d", got, 64<<20)
	}
}
