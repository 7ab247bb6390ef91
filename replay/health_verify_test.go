package replay_test

import (
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
)

// verify --verify checks health transitions against the one fsm table:
// applied but not yet ready, readiness failing and passing again are
// legal; Unhealthy from Pending (never applied) is not.
func TestVerifyKnowsHealthTransitions(t *testing.T) {
	is := is.New(t)
	b := newLog(t)
	b.manifest("pi-01", 1, "web")
	b.status("pi-01", "web", 1, "", "Pending", "specChanged")
	b.status("pi-01", "web", 1, "Pending", "Reconciling", "reconcile")
	b.attempt("pi-01", "web", 1, events.OutcomeSucceeded, "")
	b.status("pi-01", "web", 1, "Reconciling", "Unhealthy", "probeFailed") // AwaitingReadiness
	b.status("pi-01", "web", 1, "Unhealthy", "Ready", "probePassed")
	b.status("pi-01", "web", 1, "Ready", "Unhealthy", "probeFailed") // ReadinessFailed
	b.status("pi-01", "web", 1, "Unhealthy", "Reconciling", "reconcile")
	b.attempt("pi-01", "web", 1, events.OutcomeSucceeded, "")
	b.status("pi-01", "web", 1, "Reconciling", "Ready", "succeeded")
	v := replay.NewVerifier(true)
	for i, e := range b.evs {
		v.Add(events.Stored{Event: e, Seq: uint64(i + 1)})
	}
	is.Equal(v.Report().Violations, []replay.Violation(nil))

	b.status("pi-01", "web", 2, "Ready", "Pending", "specChanged")
	b.status("pi-01", "web", 2, "Pending", "Unhealthy", "probeFailed")
	v = replay.NewVerifier(false)
	for i, e := range b.evs {
		v.Add(events.Stored{Event: e, Seq: uint64(i + 1)})
	}
	rep := v.Report()
	is.True(len(rep.Violations) > 0)
	is.Equal(rep.Violations[len(rep.Violations)-1].Detail, "Pending -> Unhealthy: the fsm table has no such transition")
}
