package projections

import (
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func healthLog(t *testing.T) (func(res string, p events.Payload) events.Stored, time.Time) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	i := 0
	return func(res string, p events.Payload) events.Stored {
		i++
		gen := int64(1)
		e := must(events.New("pi-01", res, gen, "agent:pi-01", p))
		if _, ok := p.(events.ManifestApplied); ok {
			e = must(events.New("pi-01", res, gen, "user:ann", p))
		}
		e.At = at.Add(time.Duration(i) * time.Second)
		e.ID = fixtureID(i)
		return events.Stored{Event: e, Seq: uint64(i)}
	}, at
}

// A resource failing for good keeps its first-failed time across retries,
// counts the repeats of the same error, and explain says it repeats.
func TestFailingForGoodKeepsFirstFailedTimeAndRepeats(t *testing.T) {
	is := is.New(t)
	mk, at := healthLog(t)
	m := events.Manifest{Resources: []events.Resource{{ID: "calib", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/sensor/calib", Content: "x"}}}}
	f := NewFleet()
	f.Apply(mk("", events.ManifestApplied{Manifest: m, Digest: m.Digest()}))
	f.Apply(mk("calib", events.StatusChanged{Kind: "file", To: "Pending", Trigger: "specChanged"}))
	first := time.Time{}
	for n := 1; n <= 4; n++ {
		from := "Pending"
		if n > 1 {
			from = "Failed"
		}
		f.Apply(mk("calib", events.StatusChanged{Kind: "file", From: from, To: "Reconciling", Trigger: "reconcile"}))
		f.Apply(mk("calib", events.ReconcileAttempted{Kind: "file", Attempt: n, Outcome: "failed", Error: "not a directory"}))
		s := mk("calib", events.StatusChanged{Kind: "file", From: "Reconciling", To: "Failed", Trigger: "failed", Error: "not a directory", Attempts: n})
		if n == 1 {
			first = s.At
		}
		f.Apply(s)
	}
	d, _ := f.Device("pi-01")
	r := d.Resources[0]
	is.Equal(r.State, "Failed")
	is.Equal(r.Since, first) // not reset by each retry
	is.Equal(r.Repeats, 4)
	is.Equal(*r.ErrorSince, first)
	x, ok := f.Explain("pi-01", "calib")
	is.True(ok)
	why := strings.Join(x.Why, "\n")
	is.True(strings.Contains(why, "Failed since "+ts(first)))
	is.True(strings.Contains(why, "the error repeats: 4 times in a row since "+ts(first)))
	// a different error starts its own count; the run of failures goes on
	f.Apply(mk("calib", events.StatusChanged{Kind: "file", From: "Failed", To: "Reconciling", Trigger: "reconcile"}))
	f.Apply(mk("calib", events.StatusChanged{Kind: "file", From: "Reconciling", To: "Failed", Trigger: "failed", Error: "read-only file system", Attempts: 5}))
	d, _ = f.Device("pi-01")
	is.Equal(d.Resources[0].Repeats, 1)
	is.Equal(d.Resources[0].Since, first)
	_ = at
}

// Health transitions: the device is Degraded (Unhealthy) and, after
// liveness restarts, CrashLooping with the restarts and the next restart;
// explain names the probe, how often it failed, its output and the next
// restart; once healthy again the conditions clear.
func TestHealthConditionsAndExplain(t *testing.T) {
	is := is.New(t)
	mk, _ := healthLog(t)
	m := events.Manifest{Resources: []events.Resource{{ID: "web", Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "nginx:1"}}}}
	f := NewFleet()
	f.Apply(mk("", events.ManifestApplied{Manifest: m, Digest: m.Digest()}))
	f.Apply(mk("web", events.StatusChanged{Kind: "container", To: "Pending", Trigger: "specChanged"}))
	f.Apply(mk("web", events.StatusChanged{Kind: "container", From: "Pending", To: "Reconciling", Trigger: "reconcile"}))
	f.Apply(mk("web", events.StatusChanged{Kind: "container", From: "Reconciling", To: "Ready", Trigger: "succeeded"}))
	next := time.Date(2025, 1, 1, 0, 10, 0, 0, time.UTC)
	f.Apply(mk("web", events.StatusChanged{Kind: "container", From: "Ready", To: "Unhealthy", Trigger: "probeFailed",
		Reason: "LivenessFailed", Error: "HTTP 500: db down", Probe: "liveness", Failures: 3, Restarts: 4, NextRestart: &next}))
	d, _ := f.Device("pi-01")
	is.Equal(d.ObservedGeneration, int64(1)) // Unhealthy is settled: applied, health known
	c, _ := d.Condition(CondDegraded)
	is.Equal(c.Reason, "ResourcesUnhealthy")
	c, ok := d.Condition(CondCrashLooping)
	is.True(ok)
	is.Equal(c.Status, True)
	is.True(strings.Contains(c.Message, "4 restarts"))
	is.True(strings.Contains(c.Message, "next restart at "+ts(next)))
	c, _ = d.Condition(CondReady)
	is.Equal(c.Status, False)
	is.Equal(d.Resources[0].Health.Probe, "liveness")
	x, _ := f.Explain("pi-01", "web")
	why := strings.Join(x.Why, "\n")
	is.True(strings.Contains(why, `liveness probe failed 3 times in a row (LivenessFailed), last output "HTTP 500: db down", 4 restarts, next restart at `+ts(next)))
	is.Equal(x.Health.Failures, 3)

	f.Apply(mk("web", events.StatusChanged{Kind: "container", From: "Unhealthy", To: "Ready", Trigger: "probePassed"}))
	d, _ = f.Device("pi-01")
	_, ok = d.Condition(CondCrashLooping)
	is.True(!ok)
	c, _ = d.Condition(CondReady)
	is.Equal(c.Status, True)
}
