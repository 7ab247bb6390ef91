// Package fsm holds the one lifecycle of a managed resource: its states, the
// triggers that move it, and the transition table that the agent drives and that
// `fleet replay --verify` checks the log against. It is pure: no I/O, no clock.
package fsm

import (
	"context"
	"errors"
	"fmt"

	lfsm "github.com/looplab/fsm"
)

// State is where a resource is in its lifecycle.
type State string

// The states of DESIGN.md. None is the state of a resource that has no history
// yet (or whose history was closed by Removed and starts again).
const (
	None        State = ""
	Pending     State = "Pending"
	Reconciling State = "Reconciling"
	Ready       State = "Ready"
	Failed      State = "Failed"
	Removed     State = "Removed"
	// Unhealthy is a resource that was applied but whose health says it is
	// not Ready: its readiness probe has not passed yet or failed
	// failureThreshold times in a row, its liveness probe failed (it is
	// being restarted), or its kind's own health says it is down or
	// crash-looping. The StatusChanged that enters it names the probe, the
	// reason and the probe's last output.
	Unhealthy State = "Unhealthy"
)

// States lists every state a StatusChanged event may name, in lifecycle order.
var States = []State{Pending, Reconciling, Ready, Unhealthy, Failed, Removed}

// Trigger is what moves a resource from one state to another.
type Trigger string

// The triggers of DESIGN.md.
const (
	SpecChanged Trigger = "specChanged" // the manifest brought a new or changed spec
	Reconcile   Trigger = "reconcile"   // an attempt starts (first try, retry after backoff, or drift)
	Succeeded   Trigger = "succeeded"   // the attempt converged the resource
	FailedT     Trigger = "failed"      // the attempt failed; retry later
	Remove      Trigger = "removed"     // the resource left the manifest
	// ProbeFailed: applied, but health says not Ready (readiness not yet
	// passed or failing, liveness failing, the kind's own health down).
	ProbeFailed Trigger = "probeFailed"
	// ProbePassed: every probe (and the kind's own health) passes again.
	ProbePassed Trigger = "probePassed"
)

// Triggers lists every trigger.
var Triggers = []Trigger{SpecChanged, Reconcile, Succeeded, FailedT, Remove, ProbeFailed, ProbePassed}

// Transition is one row of the table: Trigger moves a resource from any of From to To.
type Transition struct {
	Trigger Trigger
	From    []State
	To      State
}

// Table is the only transition table. A resource that is None (new, or Removed
// before) can only become Pending; any live resource can go back to Pending when
// its spec changes, and can be removed.
//
// Health (events.HealthSpec) enters through two triggers. An attempt that
// converged a resource whose readiness has not passed yet moves it
// Reconciling -> Unhealthy (probeFailed, reason AwaitingReadiness), not
// Ready; a Ready resource whose readiness or liveness fails failureThreshold
// times in a row, or whose kind's own health is down, moves Ready ->
// Unhealthy (probeFailed, with the probe, reason and output); when every
// probe passes again it moves Unhealthy -> Ready (probePassed). An Unhealthy
// resource that stays so for another reason (readiness failed, then
// liveness) or whose probe fails another way (HTTP 500, then connection
// refused) moves Unhealthy -> Unhealthy (probeFailed). Probe runs that
// change nothing are no transition and no event. A liveness restart is
// recorded as a ReconcileAttempted (trigger liveness), not a transition. An
// Unhealthy resource is still applied: drift checks (reconcile) run on it.
var Table = []Transition{
	{SpecChanged, []State{None, Removed, Pending, Reconciling, Ready, Unhealthy, Failed}, Pending},
	{Reconcile, []State{Pending, Failed, Ready, Unhealthy}, Reconciling},
	{Succeeded, []State{Reconciling}, Ready},
	{FailedT, []State{Reconciling}, Failed},
	{Remove, []State{Pending, Reconciling, Ready, Unhealthy, Failed}, Removed},
	{ProbeFailed, []State{Reconciling, Ready, Unhealthy}, Unhealthy},
	{ProbePassed, []State{Unhealthy}, Ready},
}

// ErrIllegal is returned (wrapped) for a trigger that the table does not allow
// from the current state.
var ErrIllegal = errors.New("illegal transition")

// Next returns the state that trigger moves from to, or an error wrapping
// ErrIllegal naming both when the table has no such row.
func Next(from State, t Trigger) (State, error) {
	for _, row := range Table {
		if row.Trigger != t {
			continue
		}
		for _, f := range row.From {
			if f == from {
				return row.To, nil
			}
		}
	}
	return from, fmt.Errorf("%w: %q from %s", ErrIllegal, t, name(from))
}

// Valid reports whether the table allows a resource to go from one state to
// another by some trigger. Replay uses it to verify StatusChanged events.
func Valid(from, to State) bool {
	for _, row := range Table {
		if row.To != to {
			continue
		}
		for _, f := range row.From {
			if f == from {
				return true
			}
		}
	}
	return false
}

// TriggerFor returns the trigger that moves from to to, if the table has one.
func TriggerFor(from, to State) (Trigger, bool) {
	for _, row := range Table {
		if row.To != to {
			continue
		}
		for _, f := range row.From {
			if f == from {
				return row.Trigger, true
			}
		}
	}
	return "", false
}

// noneName stands for None inside looplab/fsm, which needs a non-empty state.
const noneName = "None"

func name(s State) string {
	if s == None {
		return noneName
	}
	return string(s)
}

// NewMachine builds a looplab/fsm machine from Table, starting in initial.
// onEnter, if not nil, is called after every transition, including a
// re-entry of the same state (Pending on a second spec change), with the
// states before and after. A machine is not safe for concurrent use.
func NewMachine(initial State, onEnter func(from, to State, t Trigger)) *Machine {
	var evs []lfsm.EventDesc
	for _, row := range Table {
		src := make([]string, len(row.From))
		for i, f := range row.From {
			src[i] = name(f)
		}
		evs = append(evs, lfsm.EventDesc{Name: string(row.Trigger), Src: src, Dst: name(row.To)})
	}
	return &Machine{f: lfsm.NewFSM(name(initial), evs, nil), onEnter: onEnter}
}

// Machine is one resource's lifecycle, driven by Fire.
type Machine struct {
	f       *lfsm.FSM
	onEnter func(from, to State, t Trigger)
}

// Current returns the state the machine is in.
func (m *Machine) Current() State {
	s := m.f.Current()
	if s == noneName {
		return None
	}
	return State(s)
}

// Can reports whether t is allowed from the current state.
func (m *Machine) Can(t Trigger) bool { return m.f.Can(string(t)) }

// Fire applies t. It returns the new state, or an error wrapping ErrIllegal
// and leaves the state unchanged when the table forbids t from here.
func (m *Machine) Fire(t Trigger) (State, error) {
	from := m.Current()
	err := m.f.Event(context.Background(), string(t))
	var noTrans lfsm.NoTransitionError
	if err != nil && !errors.As(err, &noTrans) {
		return from, fmt.Errorf("%w: %q from %s", ErrIllegal, t, name(from))
	}
	to := m.Current()
	if m.onEnter != nil {
		m.onEnter(from, to, t)
	}
	return to, nil
}
