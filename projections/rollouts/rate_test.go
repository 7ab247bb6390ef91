package rollouts_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/rollout"
)

// unknownDevices is a projection service that knows no device yet: every
// wave waits on its gate, so the test sees targeting alone.
type unknownDevices struct{}

func (unknownDevices) Device(context.Context, string) (projections.Device, error) {
	return projections.Device{}, events.ErrNotFound
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("pi-%04d", i)
	}
	return out
}

// startRollout appends RolloutStarted for devices in one wave (100%).
func startRollout(t *testing.T, st rollouts.Log, id string, ds []string, ws []string, perMinute int) {
	t.Helper()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "new\n"}}}}
	spec := &events.RolloutStarted{Selector: "site=lab", Manifest: m, Digest: m.Digest(), Waves: ws, Devices: ds,
		MaxFailures: 2, OnFailure: events.OnFailurePause, MaxPerMinute: perMinute, WaveDeadline: time.Hour}
	if _, err := rollouts.Decide(context.Background(), st, clock, &rollout.Rollout{ID: id}, "user:ops", spec); err != nil {
		t.Fatal(err)
	}
}

// TestRolloutMaxPerMinuteHoldsTheRate: --max-per-minute 600 over 300
// devices on a real JetStream log: the controller (stepping every 100 ms)
// targets them over about 30 s, and the rate measured on the
// DeviceTargeted stream (its events' times, first to last) is within 10 %
// of 600 a minute; in no minute-long window are more than 600 targeted,
// and every device is targeted once.
func TestRolloutMaxPerMinuteHoldsTheRate(t *testing.T) {
	if testing.Short() {
		t.Skip("30 s of pacing: not in -short")
	}
	const n, rate = 300, 600
	env := eventstest.Start(t, true)
	startRollout(t, env.Store, "RATE", ids(n), []string{"100%"}, rate)
	ctl, err := rollouts.NewController(env.Store, unknownDevices{}, "user:rollout-controller")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ctl.Run(ctx, 100*time.Millisecond, func(err error) { t.Log(err) }) }()
	defer func() { cancel(); wg.Wait() }()
	var r *rollout.Rollout
	eventstest.WaitFor(t, 90*time.Second, "every device targeted", func() bool {
		r, err = rollouts.Load(context.Background(), env.Store, "RATE")
		if err == nil && len(r.Targeted) == n {
			return true
		}
		time.Sleep(500 * time.Millisecond)
		return false
	})
	var at []time.Time
	seen := map[string]bool{}
	for s, err := range env.Store.Read(context.Background(), events.Filter{SubjectFilters: []string{events.TargetedSubject("*", "RATE")}}) {
		if err != nil {
			t.Fatal(err)
		}
		if seen[s.Device] {
			t.Fatalf("%s targeted twice", s.Device)
		}
		seen[s.Device] = true
		at = append(at, s.At)
	}
	if len(at) != n {
		t.Fatalf("%d DeviceTargeted events, want %d", len(at), n)
	}
	span := at[n-1].Sub(at[0])
	got := float64(n-1) / span.Minutes()
	t.Logf("%d devices targeted over %s: %.1f a minute (limit %d)", n, span.Round(time.Millisecond), got, rate)
	if got < rate*0.9 || got > rate*1.1 {
		t.Fatalf("targeting rate %.1f a minute, want %d within 10%%", got, rate)
	}
	for i := range at {
		j := i
		for j < n && at[j].Sub(at[i]) < time.Minute {
			j++
		}
		if j-i > rate+1 {
			t.Fatalf("%d targeted within a minute from %s", j-i, at[i])
		}
	}
}

// TestPaceBudget: the pace counts from the later of the wave's start and
// the last resume, one device at once, then rate × elapsed.
func TestPaceBudget(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := &rollout.Rollout{Spec: events.RolloutStarted{MaxPerMinute: 60}, WaveAt: t0, Targeted: map[string]*rollout.Target{}}
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{0, 1}, {999 * time.Millisecond, 1}, {time.Second, 2}, {10 * time.Second, 11}} {
		if got := rollouts.PaceBudget(r, t0.Add(c.after)); got != c.want {
			t.Errorf("after %s: %d, want %d", c.after, got, c.want)
		}
	}
	r.Targeted["a"] = &rollout.Target{At: t0}
	r.Targeted["b"] = &rollout.Target{At: t0.Add(time.Second)}
	if got := rollouts.PaceBudget(r, t0.Add(time.Second)); got != 0 {
		t.Errorf("two targeted in the first second: budget %d, want 0", got)
	}
	r.ResumedAt = t0.Add(time.Hour) // an hour paused is no credit
	if got := rollouts.PaceBudget(r, t0.Add(time.Hour+time.Second)); got != 2 {
		t.Errorf("a second after resume: budget %d, want 2", got)
	}
	r.Spec.MaxPerMinute = 0
	if got := rollouts.PaceBudget(r, t0); got != -1 {
		t.Errorf("no limit: %d, want -1", got)
	}
}
