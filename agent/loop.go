package agent

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// Reasons the agent gives in StatusChanged and ManifestRejected.
const (
	ReasonUnknownKind     = "UnknownKind"
	ReasonInvalidSpec     = "InvalidSpec"
	ReasonApplyFailed     = "ApplyFailed"
	ReasonTimeout         = "Timeout"
	ReasonInterrupted     = "Interrupted"
	ReasonInvalidManifest = "InvalidManifest"
	ReasonUndecodable     = "Undecodable"
	ReasonStaleGeneration = "StaleGeneration"
)

// Triggers recorded on ReconcileAttempted: why the attempt ran.
const (
	attemptSpec   = "spec"   // a new or changed spec
	attemptRetry  = "retry"  // after a failure's backoff
	attemptDrift  = "drift"  // to correct drift
	attemptResume = "resume" // an attempt interrupted by a restart
	attemptRemove = "removed"
)

const maxOutput = 4 << 10

// resource is the loop's view of one managed resource.
type resource struct {
	rec       *resourceRecord
	m         *fsm.Machine
	busy      bool   // a reconciler call runs for it
	token     int    // bumped on each spec change; a result with an older token is stale
	trigger   string // why it is Reconciling
	nextDrift time.Time
	notified  bool // a watcher saw a change
	appliedAt time.Time
	// health is the probe scheduler's view (health.go), nil for none;
	// healthNote the probe details of the transition being recorded.
	health     *health
	healthNote *healthNote
	healthKept []byte // the health state last written to the store (health_persist.go)
	driftFix   string // the drift the running correction is for, for the agent's log
}

// ownWriteWindow is how long after its own apply the agent ignores change
// notifications for a resource: they are its own writes echoing back. A real
// change in that window is caught by the next interval check.
const ownWriteWindow = 300 * time.Millisecond

// loop owns the agent's state while Run runs: every change goes through it,
// one txn per step.
type loop struct {
	a           *Agent
	manifest    *manifestRecord
	rejectedSeq uint64
	reg         *events.DeviceRegistered
	res         map[string]*resource
	order       []string
	inflight    int // reconciler calls running
	results     chan []result
	notify      chan string
	touched     map[string]bool
	stopWatch   context.CancelFunc
	watchDirty  bool
	nextBeat    time.Time
	shutdown    bool

	probeResults chan []*probeRun // outcomes of probe calls (health_loop.go)
	probing      int              // probe calls under way
}

func newLoop(a *Agent) *loop {
	s := a.snap
	l := &loop{
		a: a, manifest: s.manifest, rejectedSeq: s.rejectedSeq, reg: s.registration,
		res: map[string]*resource{}, results: make(chan []result, a.o.concurrency),
		notify: make(chan string, 1024), touched: map[string]bool{},
		probeResults: make(chan []*probeRun, maxProbes),
	}
	now := time.Now()
	kept := loadHealth(a)
	for id, rec := range s.resources {
		x := &resource{rec: rec, m: fsm.NewMachine(rec.State, nil)}
		if rec.State == fsm.Ready || rec.State == fsm.Unhealthy {
			x.nextDrift = now // a restarted agent checks what it manages
			if rc := a.recs[rec.Kind]; rc != nil {
				x.health = newHealth(&rec.Resource, rec.SpecDigest, rc, now) // probes start over
				if rec.State == fsm.Ready {
					x.health.wasReady()
				}
				l.restoreHealth(x, kept[id]) // what the probes had judged, from the store
			}
		}
		if rec.State == fsm.Reconciling {
			x.trigger = attemptResume
		}
		if rec.State == fsm.Failed && rec.Reason == ReasonUnknownKind && a.recs[rec.Kind] != nil {
			rec.RetryAfter = now // this build knows the kind now
		}
		l.res[id] = x
	}
	l.rebuildOrder()
	return l
}

// rebuildOrder lists resources in manifest order, then those being removed.
func (l *loop) rebuildOrder() {
	l.order = l.order[:0]
	seen := map[string]bool{}
	if l.manifest != nil {
		for _, r := range l.manifest.Manifest.Resources {
			if _, ok := l.res[r.ID]; ok && !seen[r.ID] {
				l.order = append(l.order, r.ID)
				seen[r.ID] = true
			}
		}
	}
	rest := slices.Sorted(maps.Keys(l.res))
	for _, id := range rest {
		if !seen[id] {
			l.order = append(l.order, id)
		}
	}
}

// register records DeviceRegistered on first start and whenever what it
// says changed.
func (l *loop) register() error {
	a := l.a
	want := events.DeviceRegistered{AgentVersion: Version, Kinds: a.Kinds(), ExecAllowed: a.o.allowExec}
	if len(a.o.labels) > 0 {
		want.Labels = a.o.labels
	}
	if l.reg != nil && reflect.DeepEqual(*l.reg, want) {
		return nil
	}
	t := a.begin()
	if _, err := t.emit("", a.Generation(), "", "", &want); err != nil {
		t.abort()
		return err
	}
	if err := t.putJSON(keyRegistration, want); err != nil {
		t.abort()
		return err
	}
	if _, err := t.commit(); err != nil {
		return err
	}
	l.reg = &want
	return nil
}

// run is the loop: wait for input, apply it and the scheduling it allows in
// one txn, commit, then start the reconciler calls the txn recorded.
func (l *loop) run(ctx context.Context, manifests <-chan manifestUpdate, beats chan heartbeat) error {
	a := l.a
	workCtx, cancelWork := context.WithCancel(context.Background())
	defer cancelWork()
	defer func() {
		if l.stopWatch != nil {
			l.stopWatch()
		}
	}()
	l.watchDirty = true
	timer := time.NewTimer(0)
	defer timer.Stop()
	var graceEnd <-chan time.Time
	var hardEnd <-chan time.Time
	for {
		var results [][]result
		var mans []manifestUpdate
		var notes []string
		var probes []*probeRun
		select {
		case <-ctx.Done():
			if !l.shutdown {
				l.shutdown = true
				ctx = context.Background() // ctx.Done no longer selects
				graceEnd = time.After(a.o.shutdownGrace)
				a.log.Info("stopping: no new attempts", "running", l.inflight)
			}
		case rs := <-l.results:
			results = append(results, rs)
		case m := <-manifests:
			mans = append(mans, m)
		case id := <-l.notify:
			notes = append(notes, id)
		case prs := <-l.probeResults:
			l.probing--
			probes = append(probes, prs...)
		case <-timer.C:
			// due work (retries, drift checks, the heartbeat) is found by schedule below
		case <-graceEnd:
			a.log.Warn("stopping: grace period over, interrupting running attempts", "running", l.inflight)
			cancelWork()
			graceEnd = nil
			hardEnd = time.After(2 * time.Second)
		case <-hardEnd:
			a.log.Warn("stopping: attempts did not end after interruption", "running", l.inflight)
			return nil
		}
	more:
		for {
			select {
			case rs := <-l.results:
				results = append(results, rs)
			case id := <-l.notify:
				notes = append(notes, id)
			case prs := <-l.probeResults:
				l.probing--
				probes = append(probes, prs...)
			case m := <-manifests:
				if !l.shutdown {
					mans = append(mans, m)
				}
			default:
				break more
			}
		}
		now := time.Now()
		t := a.begin()
		var calls []call
		var probeRuns [][]*probeRun
		err := func() error {
			for _, pr := range probes {
				if err := l.handleProbe(t, pr, now); err != nil {
					return err
				}
			}
			for _, rs := range results {
				l.inflight--
				for _, r := range rs {
					if err := l.handleResult(t, r, now); err != nil {
						return err
					}
				}
			}
			if !l.shutdown {
				for _, m := range mans {
					if err := l.handleManifest(t, m); err != nil {
						return err
					}
				}
				for _, id := range notes {
					if x := l.res[id]; x != nil && x.rec.State == fsm.Ready && !x.busy && now.Sub(x.appliedAt) > ownWriteWindow {
						x.notified = true
					}
				}
				var err error
				calls, err = l.schedule(t, now)
				if err != nil {
					return err
				}
				probeRuns = l.scheduleProbes(now)
			}
			return nil
		}()
		if err != nil {
			t.abort()
			return err
		}
		a.working.Store(int32(l.inflight)) // before the commit wakes the drain
		if _, err := t.commit(); err != nil {
			return err
		}
		l.publishView()
		for _, c := range calls {
			l.start(workCtx, c)
		}
		l.startProbes(workCtx, probeRuns)
		if l.shutdown {
			if l.inflight == 0 && l.probing == 0 {
				return nil
			}
			continue
		}
		if l.watchDirty {
			l.restartWatchers()
		}
		if !now.Before(l.nextBeat) {
			l.sendBeat(beats, now)
			l.nextBeat = now.Add(a.o.heartbeatInterval)
		}
		timer.Reset(max(l.nextWake(now).Sub(now), time.Millisecond))
	}
}

// publishView copies the resources changed in the last step to the status
// view, then publishes the generation in force. Both happen after the step's
// commit, and the generation after the view: whoever reads Generation() and
// then Status() never sees a new generation with the statuses of the old one
// (a manifest taken in the step it was read, not yet committed, not yet
// started).
func (l *loop) publishView() {
	a := l.a
	if len(l.touched) > 0 {
		a.viewMu.Lock()
		for id := range l.touched {
			if x, ok := l.res[id]; ok {
				a.view[id] = statusOf(x.rec)
			} else {
				delete(a.view, id)
			}
		}
		a.viewMu.Unlock()
		clear(l.touched)
	}
	if l.manifest != nil {
		a.gen.Store(l.manifest.Generation)
	}
}

// nextWake is when the loop must look again without any input.
func (l *loop) nextWake(now time.Time) time.Time {
	next := l.nextBeat
	if l.probing < maxProbes {
		next = l.healthWake(next)
	}
	if l.inflight >= l.a.o.concurrency {
		return next // a result will wake the loop
	}
	for _, x := range l.res {
		if x.busy {
			continue
		}
		var at time.Time
		switch {
		case x.rec.Removing:
			at = x.rec.RetryAfter
		case x.rec.State == fsm.Failed:
			at = x.rec.RetryAfter
		case x.rec.State == fsm.Ready || x.rec.State == fsm.Unhealthy:
			at = x.nextDrift
		}
		if !at.IsZero() && at.Before(next) {
			next = at
		}
	}
	return next
}

// transition fires trigger on x's machine and records StatusChanged.
func (l *loop) transition(t *txn, x *resource, trig fsm.Trigger, reason, errText, cause string) error {
	rec := x.rec
	from := x.m.Current()
	to, err := x.m.Fire(trig)
	if err != nil {
		return fmt.Errorf("resource %s: %w", rec.ID, err)
	}
	rec.State = to
	sc := &events.StatusChanged{Kind: rec.Kind, From: string(from), To: string(to), Trigger: string(trig),
		Reason: reason, Error: errText, Attempts: rec.Attempts}
	if to == fsm.Failed && !rec.RetryAfter.IsZero() {
		ra := rec.RetryAfter
		sc.RetryAfter = &ra
	}
	x.healthNote.fill(sc)
	e, err := t.emit(rec.ID, rec.Generation, cause, rec.Correlation, sc)
	if err != nil {
		return err
	}
	rec.LastEvent = e.ID
	l.touched[rec.ID] = true
	if to == fsm.Removed {
		delete(l.res, rec.ID)
		if x.healthKept != nil {
			if err := l.forgetHealth(t, rec.ID); err != nil {
				return err
			}
		}
		return t.deleteResource(rec.ID)
	}
	return t.putResource(rec)
}

// problem says why a resource cannot be reconciled at all, if it cannot.
func (l *loop) problem(rec *resourceRecord) (reason, detail string) {
	switch {
	case rec.Resource.Problem != "":
		return ReasonInvalidSpec, rec.Resource.Problem
	case !rec.Resource.Known() || l.a.recs[rec.Kind] == nil:
		return ReasonUnknownKind, fmt.Sprintf("kind %q: this agent reconciles %s", rec.Kind, strings.Join(l.a.Kinds(), ", "))
	}
	return l.execProbeProblem(&rec.Resource)
}

// schedule starts what is due, within the concurrency bound: first attempts,
// retries whose backoff elapsed, drift checks, deletions. Applies of a kind
// whose reconciler is a reconcile.BatchApplier share one call (up to
// maxBatch resources), so a new manifest of many files is applied in one
// batch. Transitions to Reconciling are recorded in t, so they are
// committed to the store (fsynced by the drainer before it publishes them)
// before the attempt runs.
func (l *loop) schedule(t *txn, now time.Time) ([]call, error) {
	var calls []call
	open := map[string]int{} // kind → index in calls of its batch with room
	limit := l.a.o.concurrency
	removed := false
	// canStart reports whether a job of kind for x can start in this step.
	canStart := func(x *resource, kind jobKind) bool {
		if kind == jobApply {
			if _, ok := open[x.rec.Kind]; ok {
				return true
			}
		}
		return l.inflight+len(calls) < limit
	}
	add := func(j job) {
		if ba, ok := j.rc.(reconcile.BatchApplier); ok && j.kind == jobApply {
			if i, ok := open[j.x.rec.Kind]; ok {
				calls[i].jobs = append(calls[i].jobs, j)
				if len(calls[i].jobs) >= maxBatch {
					delete(open, j.x.rec.Kind)
				}
				return
			}
			open[j.x.rec.Kind] = len(calls)
			calls = append(calls, call{jobs: []job{j}, batch: ba})
			return
		}
		calls = append(calls, call{jobs: []job{j}})
	}
	for _, id := range l.order {
		if l.inflight+len(calls) >= limit && len(open) == 0 {
			break
		}
		x := l.res[id]
		if x == nil || x.busy {
			continue
		}
		rec := x.rec
		if rec.Removing {
			if rec.RetryAfter.After(now) {
				continue
			}
			if reason, _ := l.problem(rec); reason != "" || rec.State == fsm.None {
				// Nothing of it was ever put on the device.
				if err := l.transition(t, x, fsm.Remove, "", "", rec.LastEvent); err != nil {
					return nil, err
				}
				removed = true
				continue
			}
			if canStart(x, jobDelete) {
				add(l.newJob(x, jobDelete, attemptRemove))
			}
			continue
		}
		switch rec.State {
		case fsm.Pending, fsm.Failed:
			if rec.State == fsm.Failed && (rec.RetryAfter.IsZero() || rec.RetryAfter.After(now)) {
				continue
			}
			if reason, _ := l.problem(rec); reason == "" && !canStart(x, jobApply) {
				continue
			}
			x.trigger = attemptSpec
			if rec.State == fsm.Failed {
				x.trigger = attemptRetry
			}
			if err := l.transition(t, x, fsm.Reconcile, "", "", rec.LastEvent); err != nil {
				return nil, err
			}
			if reason, detail := l.problem(rec); reason != "" {
				if err := l.failWithoutAttempt(t, x, reason, detail); err != nil {
					return nil, err
				}
				continue
			}
			add(l.newJob(x, jobApply, x.trigger))
		case fsm.Reconciling:
			if reason, detail := l.problem(rec); reason != "" {
				if err := l.failWithoutAttempt(t, x, reason, detail); err != nil {
					return nil, err
				}
				continue
			}
			if !canStart(x, jobApply) {
				continue
			}
			if x.trigger == "" {
				x.trigger = attemptResume
			}
			add(l.newJob(x, jobApply, x.trigger))
		case fsm.Ready, fsm.Unhealthy:
			if restartDue(x, now) {
				if _, ok := l.a.recs[rec.Kind].(reconcile.Restarter); ok && canStart(x, jobRestart) {
					add(l.newJob(x, jobRestart, attemptLiveness))
				}
				continue
			}
			if x.notified || (!x.nextDrift.IsZero() && !now.Before(x.nextDrift)) {
				if !canStart(x, jobObserve) {
					continue
				}
				src := "interval"
				if x.notified {
					src = "notify"
				}
				x.notified = false
				x.nextDrift = now.Add(jitter(l.a.o.driftInterval))
				add(l.newJob(x, jobObserve, src))
			}
		}
	}
	if removed {
		l.rebuildOrder()
	}
	for _, c := range calls {
		for _, j := range c.jobs {
			j.x.busy = true
		}
	}
	l.inflight += len(calls)
	return calls, nil
}

// failWithoutAttempt fails a Reconciling resource that no reconciler can
// handle (unknown kind, invalid spec): an attempt that failed at once, and
// no retry until the spec changes.
func (l *loop) failWithoutAttempt(t *txn, x *resource, reason, detail string) error {
	rec := x.rec
	rec.Attempts++
	e, err := t.emit(rec.ID, rec.Generation, rec.LastEvent, rec.Correlation, &events.ReconcileAttempted{
		Kind: rec.Kind, Attempt: rec.Attempts, Trigger: x.trigger, Outcome: events.OutcomeFailed,
		Error: reason + ": " + detail, SpecDigest: rec.SpecDigest})
	if err != nil {
		return err
	}
	rec.LastEvent = e.ID
	rec.Failures++
	rec.RetryAfter = time.Time{}
	rec.Reason, rec.Error = reason, detail
	l.logFailed(rec, reason, detail, 0)
	return l.transition(t, x, fsm.FailedT, reason, detail, e.ID)
}
