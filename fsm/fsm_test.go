package fsm_test

import (
	"errors"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/fsm"
)

// TestEveryStateTriggerPair pins the whole table of DESIGN.md: every (state,
// trigger) pair, legal and illegal, through both Next and a looplab machine.
func TestEveryStateTriggerPair(t *testing.T) {
	type row struct {
		from fsm.State
		t    fsm.Trigger
		to   fsm.State // "" with ok=false: illegal
		ok   bool
	}
	P, C, R, U, F, X, N := fsm.Pending, fsm.Reconciling, fsm.Ready, fsm.Unhealthy, fsm.Failed, fsm.Removed, fsm.None
	const PF, PP = fsm.ProbeFailed, fsm.ProbePassed
	rows := []row{
		{N, fsm.SpecChanged, P, true}, {N, fsm.Reconcile, "", false}, {N, fsm.Succeeded, "", false}, {N, fsm.FailedT, "", false}, {N, fsm.Remove, "", false}, {N, PF, "", false}, {N, PP, "", false},
		{P, fsm.SpecChanged, P, true}, {P, fsm.Reconcile, C, true}, {P, fsm.Succeeded, "", false}, {P, fsm.FailedT, "", false}, {P, fsm.Remove, X, true}, {P, PF, "", false}, {P, PP, "", false},
		{C, fsm.SpecChanged, P, true}, {C, fsm.Reconcile, "", false}, {C, fsm.Succeeded, R, true}, {C, fsm.FailedT, F, true}, {C, fsm.Remove, X, true}, {C, PF, U, true}, {C, PP, "", false},
		{R, fsm.SpecChanged, P, true}, {R, fsm.Reconcile, C, true}, {R, fsm.Succeeded, "", false}, {R, fsm.FailedT, "", false}, {R, fsm.Remove, X, true}, {R, PF, U, true}, {R, PP, "", false},
		{U, fsm.SpecChanged, P, true}, {U, fsm.Reconcile, C, true}, {U, fsm.Succeeded, "", false}, {U, fsm.FailedT, "", false}, {U, fsm.Remove, X, true}, {U, PF, U, true}, {U, PP, R, true},
		{F, fsm.SpecChanged, P, true}, {F, fsm.Reconcile, C, true}, {F, fsm.Succeeded, "", false}, {F, fsm.FailedT, "", false}, {F, fsm.Remove, X, true}, {F, PF, "", false}, {F, PP, "", false},
		{X, fsm.SpecChanged, P, true}, {X, fsm.Reconcile, "", false}, {X, fsm.Succeeded, "", false}, {X, fsm.FailedT, "", false}, {X, fsm.Remove, "", false}, {X, PF, "", false}, {X, PP, "", false},
	}
	if len(rows) != (len(fsm.States)+1)*len(fsm.Triggers) {
		t.Fatalf("table test covers %d pairs, want all %d", len(rows), (len(fsm.States)+1)*len(fsm.Triggers))
	}
	for _, r := range rows {
		t.Run(string(r.from)+"/"+string(r.t), func(t *testing.T) {
			is := is.New(t)
			got, err := fsm.Next(r.from, r.t)
			m := fsm.NewMachine(r.from, nil)
			mgot, merr := m.Fire(r.t)
			if r.ok {
				is.NoErr(err)
				is.Equal(got, r.to)
				is.NoErr(merr)
				is.Equal(mgot, r.to)
				is.Equal(m.Current(), r.to)
				is.True(fsm.Valid(r.from, r.to))
				return
			}
			is.True(errors.Is(err, fsm.ErrIllegal))
			is.True(errors.Is(merr, fsm.ErrIllegal))
			is.Equal(m.Current(), r.from) // an illegal trigger leaves the state alone
		})
	}
}

func TestValidRejectsWhatNoTriggerAllows(t *testing.T) {
	is := is.New(t)
	is.True(!fsm.Valid(fsm.Pending, fsm.Ready))        // must reconcile first
	is.True(!fsm.Valid(fsm.Failed, fsm.Ready))         // must reconcile first
	is.True(!fsm.Valid(fsm.None, fsm.Ready))           // a new resource starts Pending
	is.True(!fsm.Valid(fsm.Removed, fsm.Removed))      // history already closed
	is.True(!fsm.Valid(fsm.Ready, fsm.Ready))          // no trigger re-enters Ready
	is.True(fsm.Valid(fsm.Reconciling, fsm.Pending))   // spec changed mid-attempt
	is.True(!fsm.Valid(fsm.Pending, fsm.Unhealthy))    // health is judged only once applied
	is.True(!fsm.Valid(fsm.Failed, fsm.Unhealthy))     // a failed apply is Failed, not Unhealthy
	is.True(!fsm.Valid(fsm.Unhealthy, fsm.Failed))     // must reconcile first
	is.True(fsm.Valid(fsm.Reconciling, fsm.Unhealthy)) // applied, readiness not yet passed
}

func TestMachineReportsEveryTransition(t *testing.T) {
	is := is.New(t)
	var seen []string
	m := fsm.NewMachine(fsm.None, func(from, to fsm.State, tr fsm.Trigger) {
		seen = append(seen, string(from)+">"+string(to))
	})
	for _, tr := range []fsm.Trigger{fsm.SpecChanged, fsm.Reconcile, fsm.FailedT, fsm.Reconcile, fsm.Succeeded, fsm.SpecChanged, fsm.SpecChanged, fsm.Remove} {
		_, err := m.Fire(tr)
		is.NoErr(err)
	}
	is.Equal(seen, []string{">Pending", "Pending>Reconciling", "Reconciling>Failed", "Failed>Reconciling", "Reconciling>Ready", "Ready>Pending", "Pending>Pending", "Pending>Removed"})
}
