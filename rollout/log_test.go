package rollout_test

import (
	"context"
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/rollout"
)

// TestRolloutEventsOnTheLog: a rollout's decisions go compare-and-set on
// fleet.@rollout.<id> (a stale expectation is a conflict: two writers
// never both decide), DeviceTargeted on the device's own subject expecting
// it empty (a device is targeted once), they read back from JetStream as
// valid events on their subjects, the device's history filter holds its
// DeviceTargeted, the fleet fold ignores the decisions (no device "", nothing
// skipped) and 'fleet replay --verify' (replay.Verify) finds the log clean.
func TestRolloutEventsOnTheLog(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	st := env.Store
	clock, _ := events.NewClock(events.ClockState{}, nil)
	mk := func(device string, p events.Payload) events.Event {
		e, err := events.New(device, "r1", 0, "user:ops", p)
		is.NoErr(err)
		clock.Stamp(&e)
		return e
	}
	ds := []string{"pi-01", "pi-02", "pi-03", "pi-04"}
	ws := []string{"25%", "100%"}
	plan := rollout.Plan("r1", ds, ws)
	m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "hi\n"}}}}
	start := mk("", &events.RolloutStarted{Selector: "site=lab", Manifest: m, Digest: m.Digest(), Waves: ws, Devices: ds, OnFailure: events.OnFailurePause})
	seq, err := st.AppendExpect(ctx, start, 0)
	is.NoErr(err)
	subj := events.RolloutSubject("r1")
	is.Equal(subj, "fleet.@rollout.r1")
	w0 := mk("", &events.WaveStarted{Wave: 0, Devices: plan[0]})
	seq2, err := st.AppendExpect(ctx, w0, seq)
	is.NoErr(err)
	// a second controller that read the subject before w0: refused
	other := mk("", &events.RolloutPaused{Reason: "me too"})
	_, err = st.AppendExpect(ctx, other, seq)
	is.True(errors.Is(err, events.ErrConflict))
	// the same event again (a lost ack): stored once
	again, err := st.AppendExpect(ctx, w0, seq)
	is.NoErr(err)
	is.Equal(again, seq2)

	tgt := mk(plan[0][0], &events.DeviceTargeted{Wave: 0, Generation: 1})
	_, err = st.AppendExpect(ctx, tgt, 0)
	is.NoErr(err)
	twice := mk(plan[0][0], &events.DeviceTargeted{Wave: 0, Generation: 2})
	_, err = st.AppendExpect(ctx, twice, 0)
	is.True(errors.Is(err, events.ErrConflict)) // a device is targeted once

	// device history is one filter: it holds the DeviceTargeted
	n := 0
	for s, err := range st.Read(ctx, events.Filter{Device: plan[0][0]}) {
		is.NoErr(err)
		is.Equal(s.Type, events.TypeDeviceTargeted)
		is.Equal(s.Subject, "fleet."+plan[0][0]+".rollout.r1")
		n++
	}
	is.Equal(n, 1)

	f := projections.NewFleet()
	rep, err := replay.Verify(func(yield func(events.Stored, error) bool) {
		for s, err := range st.Read(ctx, events.Filter{}) {
			if err == nil {
				f.Apply(s)
			}
			if !yield(s, err) {
				return
			}
		}
	}, true)
	is.NoErr(err)
	is.Equal(rep.Violations, []replay.Violation(nil))
	is.Equal(rep.Events, 3)
	is.Equal(len(f.Skipped()), 0)
	is.Equal(f.DeviceIDs(), []string{plan[0][0]})

	// a forged decision (an agent deciding) is reported, not folded
	forged, err := events.New("", "r1", 0, "agent:pi-01", &events.RolloutAborted{})
	is.NoErr(err)
	clock.Stamp(&forged)
	_, _, err = st.Append(ctx, forged)
	is.NoErr(err)
	rep, err = replay.Verify(st.Read(ctx, events.Filter{}), true)
	is.NoErr(err)
	is.Equal(rep.ByKind[replay.ViolationForged], 1)
}
