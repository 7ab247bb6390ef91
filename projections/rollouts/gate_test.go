package rollouts_test

import (
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/rollout"
)

// TestJudgeSoaksFromTargetingWhenTheDeviceClockIsBehind: a device whose
// clock runs an hour behind reports Ready "since" an hour before it was
// targeted; the soak of 60 s still counts from its targeting (the control
// plane's time), so it waits 10 s after targeting and passes 61 s after.
// With its clock right, Ready since 20 s after targeting, it passes 80 s
// after, not before.
func TestJudgeSoaksFromTargetingWhenTheDeviceClockIsBehind(t *testing.T) {
	is := is.New(t)
	targeted := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tg := &rollout.Target{Device: "pi-01", Generation: 2, At: targeted}
	dev := func(since time.Time) projections.Device {
		return projections.Device{Device: "pi-01", Generation: 2, ObservedGeneration: 2,
			Resources: []projections.Resource{{ID: "motd", Kind: "file", State: "Ready", Since: since}}}
	}
	behind := dev(targeted.Add(10 * time.Second).Add(-time.Hour))
	v, why := rollouts.Judge(behind, tg, time.Minute, targeted.Add(10*time.Second))
	is.Equal(v, rollouts.Waiting) // not passed on a clock an hour behind
	t.Log(why)
	v, _ = rollouts.Judge(behind, tg, time.Minute, targeted.Add(61*time.Second))
	is.Equal(v, rollouts.Passed)

	right := dev(targeted.Add(20 * time.Second))
	v, _ = rollouts.Judge(right, tg, time.Minute, targeted.Add(61*time.Second))
	is.Equal(v, rollouts.Waiting) // Ready for 41 s only
	v, _ = rollouts.Judge(right, tg, time.Minute, targeted.Add(81*time.Second))
	is.Equal(v, rollouts.Passed)
}
