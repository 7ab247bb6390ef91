package agent

import "time"

// SetKindHealthPeriod shortens how often the kind's own health is read, for
// a test; it returns the old period.
func SetKindHealthPeriod(d time.Duration) time.Duration {
	old := kindHealthPeriod
	kindHealthPeriod = d
	return old
}
