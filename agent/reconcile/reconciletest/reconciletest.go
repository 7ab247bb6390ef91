// Package reconciletest is the contract suite every reconciler passes:
// applying is idempotent, observing after an apply finds nothing, drift made
// on the device is seen and corrected, and deleting is idempotent.
package reconciletest

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
)

// Subject is one reconciler on a fresh device, with a resource never applied there.
type Subject struct {
	Reconciler reconcile.Reconciler
	Target     reconcile.Target
	// Tamper changes the device behind the reconciler's back so that the
	// applied resource no longer matches its spec (drift).
	Tamper func(t *testing.T)
	// Changed, if set, is the same resource with a different spec (or next
	// generation): applying it after Target must change the device again.
	Changed *reconcile.Target
}

// Case sets up the device for one kind.
type Case struct {
	// New returns a subject on a fresh device (temp root, stand-in
	// programs on PATH); it is called once per contract test.
	New func(t *testing.T) Subject
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Run runs the contract suite as subtests of t.
func Run(t *testing.T, c Case) {
	t.Run("FirstApplyChangesSecondDoesNot", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		r, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		is.True(r.Changed) // first apply on a fresh device changes it
		r, err = s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		is.True(!r.Changed) // applying a converged resource changes nothing
	})
	t.Run("ObserveAfterApplyFindsNothing", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		d, err := s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.True(len(d) > 0) // a fresh device differs from the spec
		_, err = s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		d, err = s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.Equal(len(d), 0) // converged after apply
	})
	t.Run("ObserveChangesNothing", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		before, err := s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		after, err := s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.Equal(before, after) // observing twice sees the same device
		r, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		is.True(r.Changed) // observe did not converge anything
	})
	t.Run("DriftIsSeenAndCorrected", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		_, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		s.Tamper(t)
		d, err := s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.True(len(d) > 0) // drift is seen
		for _, x := range d {
			is.True(x.Field != "")            // a difference names its field
			is.True(x.Expected != x.Observed) // and shows two different values
		}
		r, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		is.True(r.Changed) // correcting drift changes the device
		d, err = s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.Equal(len(d), 0) // converged again
	})
	t.Run("DeleteIsIdempotent", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		is.NoErr(s.Reconciler.Delete(ctx(t), s.Target)) // deleting what was never there succeeds
		_, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		is.NoErr(s.Reconciler.Delete(ctx(t), s.Target))
		is.NoErr(s.Reconciler.Delete(ctx(t), s.Target)) // twice
		d, err := s.Reconciler.Observe(ctx(t), s.Target)
		is.NoErr(err)
		is.True(len(d) > 0) // after delete the resource is gone again
	})
	t.Run("ChangedSpecIsApplied", func(t *testing.T) {
		is := is.New(t)
		s := c.New(t)
		if s.Changed == nil {
			t.Skip("case gives no changed spec")
		}
		_, err := s.Reconciler.Apply(ctx(t), s.Target)
		is.NoErr(err)
		d, err := s.Reconciler.Observe(ctx(t), *s.Changed)
		is.NoErr(err)
		is.True(len(d) > 0) // the new spec differs from the device
		r, err := s.Reconciler.Apply(ctx(t), *s.Changed)
		is.NoErr(err)
		is.True(r.Changed)
		d, err = s.Reconciler.Observe(ctx(t), *s.Changed)
		is.NoErr(err)
		is.Equal(len(d), 0)
	})
}
