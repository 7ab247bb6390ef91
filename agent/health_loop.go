package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// How health runs in the loop (the probe scheduler). Probes run on the
// agent's own scheduler, never podman's or systemd's timers: after a
// resource is applied, the loop starts each due probe (at most maxProbes at
// once) in a goroutine; its outcome comes back on probeResults and is
// handled in the loop's next step. An outcome that changes nothing is no
// event and no write; one that changes the resource's health verdict is
// one StatusChanged (Ready <-> Unhealthy, see fsm.Table). A liveness (or
// startup) failure past its failureThreshold schedules a restart after the
// resource's restart backoff; the restart is a reconciler call like an
// apply (the resource is busy meanwhile) recorded as a ReconcileAttempted
// with trigger "liveness".

const attemptLiveness = "liveness"

// execProbeProblem says why the agent refuses rec's health spec: an exec
// probe on an agent not allowed to run programs.
func (l *loop) execProbeProblem(r *events.Resource) (reason, detail string) {
	h := r.Health()
	if h == nil || l.a.o.allowExec {
		return "", ""
	}
	for _, p := range []struct {
		name string
		p    *events.Probe
	}{{probeReadiness, h.Readiness}, {probeLiveness, h.Liveness}, {probeStartup, h.Startup}} {
		if p.p != nil && p.p.Exec != nil {
			return ReasonExecProbeNotAllowed, fmt.Sprintf("health.%s is an exec probe, and this agent was started without --allow-exec: start it with --allow-exec, or use an http or tcp probe", p.name)
		}
	}
	return "", ""
}

// applied moves a resource whose attempt converged it: Ready, or, when it
// has a readiness or startup probe, Unhealthy (AwaitingReadiness) until
// the probe passes. Its health view starts afresh.
func (l *loop) applied(t *txn, x *resource, cause string, now time.Time) error {
	rec := x.rec
	x.health = newHealth(&rec.Resource, rec.SpecDigest, l.a.recs[rec.Kind], now)
	if err := l.keepHealth(t, x); err != nil {
		return err
	}
	h := x.health
	if h == nil || (h.started && h.readiness == nil) {
		return l.transition(t, x, fsm.Succeeded, "", "", cause)
	}
	_, probe, reason, _, _ := h.verdict()
	return l.healthTransition(t, x, fsm.ProbeFailed, probe, reason, "", 0, cause)
}

// healthTransition records a health transition with its probe details.
func (l *loop) healthTransition(t *txn, x *resource, trig fsm.Trigger, probe, reason, output string, failures int, cause string) error {
	x.healthNote = &healthNote{probe: probe, failures: failures}
	if h := x.health; h != nil {
		x.healthNote.restarts = h.restarts
		x.healthNote.nextRestart = h.nextRestart
	}
	defer func() { x.healthNote = nil }()
	x.rec.Reason, x.rec.Error = reason, output // the status view says why
	return l.transition(t, x, trig, reason, output, cause)
}

// healthNote is what a health transition adds to its StatusChanged.
type healthNote struct {
	probe       string
	failures    int
	restarts    int
	nextRestart time.Time
}

func (n *healthNote) fill(sc *events.StatusChanged) {
	if n == nil {
		return
	}
	sc.Probe, sc.Failures, sc.Restarts = n.probe, n.failures, n.restarts
	if !n.nextRestart.IsZero() {
		at := n.nextRestart
		sc.NextRestart = &at
	}
}

// applied resources are the ones whose health runs.
func healthRuns(x *resource) bool {
	return x.health != nil && !x.rec.Removing && (x.rec.State == fsm.Ready || x.rec.State == fsm.Unhealthy)
}

// scheduleProbes returns the probe calls due at now, within maxProbes
// calls: one probe run each, except the kind health reads due of a kind
// whose reconciler reads many at once (reconcile.BatchHealthReporter: one
// podman inspect for every container due), which share one call. A batch
// also takes the kind health reads of its kind due within the next
// kindHealthEarly of a period: read a little early, they are due together
// from then on, so a device's containers settle into one podman inspect
// per period, not one each at the phase of their own apply.
func (l *loop) scheduleProbes(now time.Time) [][]*probeRun {
	var calls [][]*probeRun
	batch := map[string]int{} // kind → its call in calls
	type soon struct {
		x  *resource
		t  *probeTrack
		rc reconcile.Reconciler
	}
	var early []soon // kind health reads of a batching kind due soon
	for _, id := range l.order {
		x := l.res[id]
		if x == nil || x.busy || !healthRuns(x) {
			continue
		}
		var buf [3]*probeTrack
		for _, t := range x.health.tracks(&buf) {
			if t.running {
				continue
			}
			rc := l.a.recs[x.rec.Kind]
			_, batches := rc.(reconcile.BatchHealthReporter)
			batches = batches && t.probe == nil
			if now.Before(t.next) {
				if batches && t.next.Before(now.Add(kindHealthPeriod/kindHealthEarly)) {
					early = append(early, soon{x, t, rc})
				}
				continue
			}
			i, open := batch[x.rec.Kind]
			if !(batches && open) && l.probing+len(calls) >= maxProbes {
				continue // a batch with room may still take a kind health read
			}
			t.running = true
			r := l.newProbeRun(x, t, rc)
			switch {
			case batches && open:
				calls[i] = append(calls[i], r)
			case batches:
				batch[x.rec.Kind] = len(calls)
				calls = append(calls, []*probeRun{r})
			default:
				calls = append(calls, []*probeRun{r})
			}
		}
	}
	for _, e := range early {
		if i, open := batch[e.x.rec.Kind]; open {
			e.t.running = true
			calls[i] = append(calls[i], l.newProbeRun(e.x, e.t, e.rc))
		}
	}
	return calls
}

// kindHealthEarly: a kind health batch takes the reads due within the
// next 1/kindHealthEarly of kindHealthPeriod.
const kindHealthEarly = 2

func (l *loop) newProbeRun(x *resource, t *probeTrack, rc reconcile.Reconciler) *probeRun {
	return &probeRun{x: x, h: x.health, t: t, rc: rc,
		target: reconcile.Target{Resource: x.rec.Resource, Generation: x.rec.Generation}}
}

// startProbes runs the probe calls in goroutines; each call's outcomes
// come back together on l.probeResults.
func (l *loop) startProbes(ctx context.Context, calls [][]*probeRun) {
	l.probing += len(calls)
	for _, c := range calls {
		go func() {
			if len(c) > 1 {
				runKindHealthBatch(ctx, c)
			} else {
				c[0].run(ctx)
			}
			l.probeResults <- c
		}()
	}
}

// handleProbe takes one probe outcome: it updates the resource's health
// view and records a transition only when the verdict changed.
func (l *loop) handleProbe(t *txn, r *probeRun, now time.Time) error {
	x := r.x
	if l.res[x.rec.ID] != x || x.health != r.h {
		return nil // removed, or the spec changed since: the run is stale
	}
	r.t.reason = r.reason
	r.h.record(r.t, r.ok, r.output, r.restarts, now)
	if err := l.keepHealth(t, x); err != nil {
		return err
	}
	if !healthRuns(x) || x.busy {
		return nil
	}
	ok, probe, reason, output, failures := r.h.verdict()
	switch {
	case !ok && reason == reasonStartLimitHit:
		return l.failFromHealth(t, x, reason, output, now)
	case ok && x.rec.State == fsm.Unhealthy:
		return l.healthTransition(t, x, fsm.ProbePassed, "", "", "", 0, x.rec.LastEvent)
	case !ok && x.rec.State == fsm.Ready:
		return l.healthTransition(t, x, fsm.ProbeFailed, probe, reason, output, failures, x.rec.LastEvent)
	case !ok && x.rec.State == fsm.Unhealthy && (reason != x.rec.Reason || outputClass(output) != outputClass(x.rec.Error)):
		// still Unhealthy, for another reason (readiness failed, then
		// liveness), or the probe fails another way (HTTP 500, then
		// connection refused): the outcome changed, so it is an event
		// (Unhealthy -> Unhealthy); the same failure again is not.
		return l.healthTransition(t, x, fsm.ProbeFailed, probe, reason, output, failures, x.rec.LastEvent)
	}
	return nil
}

// reasonStartLimitHit is the kind health (reconcile.SystemdUnit) of a unit
// systemd stopped restarting: a failure, not a probe verdict.
const reasonStartLimitHit = "StartLimitHit"

// failFromHealth fails an applied resource whose kind gave up on it (a
// start-limit hit): Reconciling then Failed with the reason, retried after
// the longest backoff (systemd will not start it again before an operator
// or the retry resets it).
func (l *loop) failFromHealth(t *txn, x *resource, reason, detail string, now time.Time) error {
	rec := x.rec
	x.trigger = "health"
	if err := l.transition(t, x, fsm.Reconcile, "", "", rec.LastEvent); err != nil {
		return err
	}
	rec.Attempts++
	e, err := t.emit(rec.ID, rec.Generation, rec.LastEvent, rec.Correlation, &events.ReconcileAttempted{
		Kind: rec.Kind, Attempt: rec.Attempts, Trigger: "health", Outcome: events.OutcomeFailed,
		Error: reason + ": " + detail, SpecDigest: rec.SpecDigest})
	if err != nil {
		return err
	}
	rec.LastEvent = e.ID
	rec.Failures++
	rec.RetryAfter = now.Add(l.a.o.backoffMax)
	rec.Reason, rec.Error = reason, detail
	l.logFailed(rec, reason, detail, l.a.o.backoffMax)
	return l.transition(t, x, fsm.FailedT, reason, detail, e.ID)
}

// restartDue reports whether x's liveness restart is due at now.
func restartDue(x *resource, now time.Time) bool {
	return healthRuns(x) && !x.health.nextRestart.IsZero() && !now.Before(x.health.nextRestart)
}

// restartResult records a liveness restart: a ReconcileAttempted (trigger
// liveness) and the probes starting over.
func (l *loop) restartResult(t *txn, r result, now time.Time) error {
	x, rec := r.x, r.x.rec
	why := ""
	if w := x.health.restartWhy; w != nil {
		why = w.role + " probe failed " + fmt.Sprint(w.fail) + " times: " + w.output
	}
	ra := &events.ReconcileAttempted{Kind: rec.Kind, Attempt: rec.Attempts, Trigger: attemptLiveness, Duration: r.dur,
		Outcome: events.OutcomeSucceeded, Changed: r.res.Changed, Output: truncate(why, maxProbeOutput), SpecDigest: r.digest}
	if r.err != nil {
		ra.Outcome, ra.Error = events.OutcomeFailed, r.err.Error()
	}
	e, err := t.emit(rec.ID, rec.Generation, rec.LastEvent, rec.Correlation, ra)
	if err != nil {
		return err
	}
	rec.LastEvent = e.ID
	x.health.restarted(now)
	if err := l.keepHealth(t, x); err != nil {
		return err
	}
	if rec.State == fsm.Ready && x.health.startup != nil {
		// restarted: not Ready until its startup (and readiness) pass again
		_, probe, reason, output, failures := x.health.verdict()
		return l.healthTransition(t, x, fsm.ProbeFailed, probe, reason, output, failures, e.ID)
	}
	return nil
}

// healthWake is the earliest probe or restart due of any resource.
func (l *loop) healthWake(next time.Time) time.Time {
	for _, x := range l.res {
		if x.busy || !healthRuns(x) {
			continue
		}
		if at := x.health.due(); !at.IsZero() && at.Before(next) {
			next = at
		}
	}
	return next
}

// outputClass is the kind of failure a probe's output says, without what
// varies from run to run (times, addresses, bodies): "HTTP 503", "exit
// status 2", "connection refused", "timeout". Two failures of one class
// are the same outcome.
func outputClass(output string) string {
	switch {
	case output == "":
		return ""
	case strings.HasPrefix(output, "HTTP "):
		code, _, _ := strings.Cut(output, ":")
		return code
	case strings.HasPrefix(output, "exit status "):
		code, _, _ := strings.Cut(output, ":")
		return code
	}
	lower := strings.ToLower(output)
	for _, c := range []string{"connection refused", "connection reset", "no such host", "no route to host",
		"network is unreachable", "certificate", "eof"} {
		if strings.Contains(lower, c) {
			return c
		}
	}
	if strings.Contains(lower, "timed out") || strings.Contains(lower, "timeout") || strings.Contains(lower, "deadline exceeded") {
		return "timeout"
	}
	return "other"
}
