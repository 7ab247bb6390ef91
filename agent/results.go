package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// What the loop does with a reconciler call's result: the attempt, the
// drift it saw or the deletion, recorded in the step's txn; and the delays
// of retries and drift checks.

// handleResult records an attempt, a drift check or a deletion.
func (l *loop) handleResult(t *txn, r result, now time.Time) error {
	x := r.x
	x.busy = false
	rec := x.rec
	stale := r.token != x.token || l.res[rec.ID] != x
	switch r.kind {
	case jobApply, jobDelete:
		x.appliedAt = now
		ra := &events.ReconcileAttempted{Kind: r.target.Resource.Kind, Attempt: r.attempt, Trigger: r.trigger,
			Duration: r.dur, Outcome: events.OutcomeSucceeded, Changed: r.res.Changed,
			Output: truncate(r.res.Output, maxOutput), ExitCode: r.res.ExitCode, SpecDigest: r.digest}
		if r.err != nil {
			ra.Outcome, ra.Error = events.OutcomeFailed, r.err.Error()
		}
		if stale {
			// The spec changed while this attempt ran: its outcome is
			// dropped, not recorded. Recorded for the generation it was for,
			// it would stand after the new generation's events (the
			// resource's generation going backwards, which replay --verify
			// flags); recorded for the new generation, it would say that the
			// new spec was attempted (the read side would count it and show
			// its error) when it was not. The log already says what
			// happened: the old spec's attempt began (Reconciling) and was
			// superseded (SpecChanged); the new spec's own attempt follows
			// and applies it in full. The agent's log keeps the outcome.
			l.a.log.Info("attempt of a superseded spec: outcome not recorded; the new spec is applied next",
				"resource", rec.ID, "generation", r.target.Generation, "now", rec.Generation,
				"outcome", ra.Outcome, "changed", ra.Changed, "err", ra.Error)
			return nil
		}
		rec.Attempts = r.attempt
		e, err := t.emit(rec.ID, rec.Generation, rec.LastEvent, rec.Correlation, ra)
		if err != nil {
			return err
		}
		rec.LastEvent = e.ID
		if r.kind == jobDelete {
			if r.err == nil {
				err := l.transition(t, x, fsm.Remove, "", "", e.ID)
				l.rebuildOrder()
				return err
			}
			rec.Failures++
			rec.RetryAfter = now.Add(l.backoff(rec.Failures))
			rec.Error = r.err.Error()
			l.touched[rec.ID] = true
			return t.putResource(rec)
		}
		if r.err == nil {
			if r.trigger == attemptDrift && x.driftFix != "" {
				l.a.log.Info("drift: corrected", "resource", rec.ID, "kind", rec.Kind, "generation", rec.Generation,
					"changed", x.driftFix, "changedBack", ra.Changed)
			}
			x.driftFix = ""
			rec.Failures, rec.RetryAfter, rec.Reason, rec.Error, rec.DriftSeen = 0, time.Time{}, "", "", ""
			x.nextDrift = now.Add(jitter(l.a.o.driftInterval))
			x.notified = false
			return l.applied(t, x, e.ID, now)
		}
		rec.Failures++
		reason, delay := ReasonApplyFailed, l.backoff(rec.Failures)
		var refused *reconcile.RefusedError
		switch {
		case errors.As(r.err, &refused):
			reason, delay = refused.Reason, l.a.o.backoffMax
		case l.shutdown && errors.Is(r.err, context.Canceled):
			reason, delay = ReasonInterrupted, 0
		case errors.Is(r.err, context.DeadlineExceeded):
			reason = ReasonTimeout
		}
		rec.RetryAfter = now.Add(delay)
		rec.Reason, rec.Error = reason, r.err.Error()
		l.logFailed(rec, reason, r.err.Error(), delay)
		return l.transition(t, x, fsm.FailedT, reason, r.err.Error(), e.ID)
	case jobRestart:
		if stale || !healthRuns(x) {
			return nil
		}
		return l.restartResult(t, r, now)
	case jobObserve:
		if stale || (rec.State != fsm.Ready && rec.State != fsm.Unhealthy) || rec.Removing {
			return nil
		}
		diffs := r.diffs
		if r.err != nil {
			diffs = []events.Difference{{Field: "observe", Expected: "observable", Observed: r.err.Error()}}
		}
		if len(diffs) == 0 {
			if rec.DriftSeen != "" {
				rec.DriftSeen = ""
				return t.putResource(rec)
			}
			return nil
		}
		policy := rec.Resource.DriftPolicy
		if policy == "" {
			policy = events.DriftCorrect
		}
		seen := describe(diffs)
		if policy == events.DriftReport && seen == rec.DriftSeen {
			return nil // reported already; report again when it changes
		}
		e, err := t.emit(rec.ID, rec.Generation, rec.LastEvent, rec.Correlation,
			&events.DriftDetected{Kind: rec.Kind, Differences: diffs, Policy: policy, Source: r.trigger})
		if err != nil {
			return err
		}
		rec.LastEvent = e.ID
		if policy == events.DriftReport {
			l.a.log.Info("drift: reported, not corrected (driftPolicy: report)", "resource", rec.ID, "kind", rec.Kind,
				"generation", rec.Generation, "changed", seen)
			rec.DriftSeen = seen
			return t.putResource(rec)
		}
		l.a.log.Info("drift: correcting", "resource", rec.ID, "kind", rec.Kind, "generation", rec.Generation, "changed", seen)
		x.driftFix = seen
		x.trigger = attemptDrift
		return l.transition(t, x, fsm.Reconcile, "", "", e.ID)
	}
	return nil
}

// logFailed says at info level that a resource failed, why, and when it
// is tried again (never: zero delay on a shutdown).
func (l *loop) logFailed(rec *resourceRecord, reason, detail string, retryIn time.Duration) {
	args := []any{"resource", rec.ID, "kind", rec.Kind, "generation", rec.Generation, "attempt", rec.Attempts,
		"failures", rec.Failures, "reason", reason, "err", detail}
	if retryIn > 0 {
		args = append(args, "retryIn", retryIn.Round(time.Millisecond).String())
	}
	l.a.log.Info("resource failed", args...)
}

// backoff is the delay before retry number failures: base doubling per
// failure up to the cap, with jitter (a random half to full delay).
func (l *loop) backoff(failures int) time.Duration {
	d := l.a.o.backoffBase
	for i := 1; i < failures && d < l.a.o.backoffMax; i++ {
		d *= 2
	}
	d = min(d, l.a.o.backoffMax)
	return d/2 + rand.N(d/2+1)
}

// jitter spreads d by ±10% so that drift checks of many resources do not
// line up.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}
