// Package rollout is a rollout's own lifecycle, pure (no I/O): its states,
// the one transition table its decisions follow (checked by `fleet replay
// --verify` and kept by the controller), which wave each device falls in,
// and the fold of a rollout's events into its state. The events are in
// package events (rollout.go there).
package rollout

import (
	"fmt"

	"github.com/fleet-dev/fleet/events"
)

// States of a rollout.
const (
	Running    = "Running"    // waves are being targeted and gated
	Failing    = "Failing"    // a wave spent the budget: the next decision pauses or rolls back
	Paused     = "Paused"     // waiting for an operator (resume, abort, promote)
	Aborted    = "Aborted"    // stopped by an operator; devices keep what they have
	RolledBack = "RolledBack" // every device it changed got its previous manifest back
	Succeeded  = "Succeeded"  // every wave passed
	Superseded = "Superseded" // a newer rollout took over its devices
)

// Terminal reports whether no decision may follow state s.
func Terminal(s string) bool {
	return s == Aborted || s == RolledBack || s == Succeeded || s == Superseded
}

// transition is one row of the table: in state From, a decision of type
// Event leads to To. From "" is a rollout not yet on the log.
type transition struct {
	From, Event, To string
}

// Table is the only transition table of a rollout's decisions.
//
//	from                     decision           to
//	(new)                    RolloutStarted     Running
//	Running                  WaveStarted        Running   (the next wave, once the one before passed)
//	Running                  WavePassed         Running   (the wave in progress)
//	Running                  WaveFailed         Failing
//	Failing                  RolloutPaused      Paused
//	Failing                  RolloutRolledBack  RolledBack
//	Running                  RolloutPaused      Paused    (an operator, or inconclusive: devices offline past the deadline)
//	Paused                   RolloutResumed     Running
//	Paused                   WavePassed         Paused    (promote: an operator skips the soak)
//	Paused                   RolloutRolledBack  RolledBack
//	Running                  RolloutSucceeded   Succeeded (after the last wave passed)
//	Running, Failing, Paused RolloutAborted     Aborted
//	Running, Failing, Paused RolloutSuperseded  Superseded
//
// DeviceTargeted is not a decision on the rollout's subject; it is allowed
// while Running, for a device of the wave in progress, once per device.
var Table = []transition{
	{"", events.TypeRolloutStarted, Running},
	{Running, events.TypeWaveStarted, Running},
	{Running, events.TypeWavePassed, Running},
	{Running, events.TypeWaveFailed, Failing},
	{Failing, events.TypeRolloutPaused, Paused},
	{Failing, events.TypeRolloutRolledBack, RolledBack},
	{Running, events.TypeRolloutPaused, Paused},
	{Paused, events.TypeRolloutResumed, Running},
	{Paused, events.TypeWavePassed, Paused},
	{Paused, events.TypeRolloutRolledBack, RolledBack},
	{Running, events.TypeRolloutSucceeded, Succeeded},
	{Running, events.TypeRolloutAborted, Aborted},
	{Failing, events.TypeRolloutAborted, Aborted},
	{Paused, events.TypeRolloutAborted, Aborted},
	{Running, events.TypeRolloutSuperseded, Superseded},
	{Failing, events.TypeRolloutSuperseded, Superseded},
	{Paused, events.TypeRolloutSuperseded, Superseded},
}

// Next returns the state a decision of type event leads to from state
// from, or an error naming both when the table has no such row.
func Next(from, event string) (string, error) {
	for _, t := range Table {
		if t.From == from && t.Event == event {
			return t.To, nil
		}
	}
	f := from
	if f == "" {
		f = "(not started)"
	}
	return "", fmt.Errorf("%s in state %s: the rollout table allows %s", event, f, allowed(from))
}

// allowed lists the decisions the table allows from a state.
func allowed(from string) string {
	var out string
	for _, t := range Table {
		if t.From == from {
			if out != "" {
				out += ", "
			}
			out += t.Event
		}
	}
	if out == "" {
		return "nothing (the rollout has ended)"
	}
	return "only " + out
}
