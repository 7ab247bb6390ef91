package main

import (
	"context"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/rollouts"
	"github.com/fleet-dev/fleet/rollout"
)

// TestRolloutRollbackIsSignedByTheControllersKey: 10 real agents that
// trust only the operator's key and the rollout controller's own
// (--trust), generation 1 signed by the operator. A rollout (waves
// 30%,100%, budget 2, --on-failure rollback) whose 3 first-wave devices
// fail: the controller signed each generation it wrote (the rollout's and
// the rollback's) with its key, the signatures verify for their device and
// generation, RolloutRolledBack declares the key id, and every device of
// the wave is Ready again on the previous manifest (its agent applies only
// manifests signed by a key it trusts).
func TestRolloutRollbackIsSignedByTheControllersKey(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	op, err := events.GenerateSigner()
	is.NoErr(err)
	ctl, err := events.GenerateSigner()
	is.NoErr(err)
	trust := events.TrustCheck([]events.PublicKey{op.Public(), ctl.Public()})
	f := startRolloutFleetSigned(t, 10, false, op, func(string, string) []agent.Option {
		return []agent.Option{agent.WithManifestCheck(trust)}
	})
	plan := rollout.Plan("RS", f.ids, []string{"30%", "100%"})
	is.Equal(len(plan[0]), 3)
	for _, id := range plan[0] {
		f.breakFile(id)
	}
	f.start("RS", "--waves", "30%,100%", "--on-failure", "rollback")
	stop := f.controller(rollouts.WithSigner(ctl))
	r := f.waitRollout("RS", func(r *rollout.Rollout) bool { return r.State == rollout.RolledBack })
	stop()
	is.True(strings.Contains(r.Reason, "signed by the rollout controller's key "+ctl.KeyID()))
	var declared string
	for s, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{SubjectFilters: []string{events.RolloutSubject("RS")}, Types: []string{events.TypeRolloutRolledBack}}) {
		is.NoErr(err)
		p, _ := s.Payload()
		declared = p.(*events.RolloutRolledBack).KeyID
	}
	is.Equal(declared, ctl.KeyID()) // the log declares the key
	for _, id := range plan[0] {
		for s, err := range f.rs.Env.Store.Read(context.Background(), events.Filter{Device: id, Types: []string{events.TypeManifestApplied}}) {
			is.NoErr(err)
			p, _ := s.Payload()
			ma := p.(*events.ManifestApplied)
			key := op.Public()
			if s.Generation > 1 {
				key = ctl.Public() // the rollout's generation and the rollback's: the controller's
			}
			is.NoErr(events.VerifyManifest(key, id, s.Generation, ma))
		}
		lm, err := f.rs.Env.Store.LastManifest(context.Background(), id)
		is.NoErr(err)
		is.Equal(lm.Generation, int64(3))
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 3 && ready(d) })
	}
	f.untouchedOutside(plan[0])
	f.decisions("RS")
}
