package main

import (
	"iter"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/replay"
)

// verifyWithGates is replay.Verify and, on a complete log, the rollouts'
// gate check (rollouts.GateChecker): every WaveFailed, WavePassed and
// inconclusive RolloutPaused re-derived from the device events before it;
// a decision they do not justify is a violation of kind gate.
func verifyWithGates(seq iter.Seq2[events.Stored, error], complete bool) (replay.Report, error) {
	if !complete {
		return replay.Verify(seq, false) // the gates need every device's history from its start
	}
	g := rollouts.NewGateChecker()
	rep, err := replay.Verify(func(yield func(events.Stored, error) bool) {
		for s, err := range seq {
			if err == nil {
				g.Add(s)
			}
			if !yield(s, err) {
				return
			}
		}
	}, true)
	for _, m := range g.Mismatches() {
		rep.Violations = append(rep.Violations, replay.Violation{Seq: m.Seq, Kind: replay.ViolationGate, Resource: m.Rollout, Detail: m.Decision + ": " + m.Detail})
		if rep.ByKind == nil {
			rep.ByKind = map[string]int{}
		}
		rep.ByKind[replay.ViolationGate]++
	}
	return rep, err
}
