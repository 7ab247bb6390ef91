package agent

import (
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// Probe roles, as StatusChanged.Probe names them. "kind" is the kind's own
// health (reconcile.HealthReporter), checked on the same scheduler.
const (
	probeReadiness = "readiness"
	probeLiveness  = "liveness"
	probeStartup   = "startup"
	probeKind      = "kind"
)

// Reasons of health transitions (StatusChanged.Reason).
const (
	ReasonAwaitingReadiness   = "AwaitingReadiness"
	ReasonReadinessFailed     = "ReadinessFailed"
	ReasonLivenessFailed      = "LivenessFailed"
	ReasonStartupFailed       = "StartupFailed"
	ReasonCrashLooping        = "CrashLooping"
	ReasonExecProbeNotAllowed = "ExecProbeNotAllowed"
)

// Crash loop: a kind restarting at least crashLoopRestarts times within
// crashLoopWindow (its own Restart=always, podman's --restart) is
// CrashLooping even while it says active.
const (
	crashLoopRestarts = 3
	crashLoopWindow   = time.Minute
	maxProbeOutput    = 1 << 10 // bytes of probe output in an event
)

// kindHealthPeriod is how often the kind's own health is read (a var for
// tests, which shorten it).
var kindHealthPeriod = events.DefaultProbePeriod

// probeTrack is one probe's schedule and the run of its outcomes.
type probeTrack struct {
	role    string
	probe   *events.Probe // nil for the kind's own health
	timing  events.Timing
	next    time.Time
	running bool
	succ    int  // passes in a row
	fail    int  // failures in a row
	passing bool // judged by the thresholds
	output  string
	reason  string // kind health: its reason when down
	total   int    // failures since the resource was applied
}

// observe records one outcome at now and schedules the next run. It
// reports whether the judged outcome (passing) changed.
func (p *probeTrack) observe(ok bool, output string, now time.Time) bool {
	p.running = false
	p.next = now.Add(p.timing.Period)
	p.output = output
	was := p.passing
	if ok {
		p.succ, p.fail = p.succ+1, 0
		if p.succ >= p.timing.SuccessThreshold {
			p.passing = true
		}
	} else {
		p.succ, p.fail = 0, p.fail+1
		p.total++
		if p.fail >= p.timing.FailureThreshold {
			p.passing = false
		}
	}
	return was != p.passing
}

// restartBackoff is the delay before each liveness restart: initial,
// doubling to max; back to initial once the resource ran resetAfter since
// its last restart. No jitter: a restart is one device's own business.
type restartBackoff struct {
	initial, max, resetAfter time.Duration
	delay                    time.Duration // of the last restart, 0 before the first
	last                     time.Time     // when the last restart was due
}

// next returns the delay of the restart asked for at now.
func (b *restartBackoff) next(now time.Time) time.Duration {
	switch {
	case b.delay == 0 || (!b.last.IsZero() && now.Sub(b.last) >= b.resetAfter):
		b.delay = b.initial
	default:
		b.delay = min(b.delay*2, b.max)
	}
	b.last = now.Add(b.delay)
	return b.delay
}

// health is the agent's in-memory view of one applied resource's health:
// its probes, the kind's own health, the restart backoff. It is rebuilt
// when the spec changes and after an agent restart (probe runs are not
// persisted; only their changes are, as StatusChanged events).
type health struct {
	digest    string
	startup   *probeTrack
	readiness *probeTrack
	liveness  *probeTrack
	kind      *probeTrack
	started   bool // the startup probe passed (or there is none)

	backoff     restartBackoff
	restarts    int       // liveness restarts by the agent
	nextRestart time.Time // zero: none due
	restartWhy  *probeTrack

	kindRestarts []restartSample // the kind's own restart counts seen
	crashLooping bool
}

type restartSample struct {
	at    time.Time
	count int
}

// newHealth builds the view of rec's spec as applied at now; it has
// nothing to track (nil) for a resource with no health spec whose kind
// reports none.
func newHealth(r *events.Resource, digest string, rc reconcile.Reconciler, now time.Time) *health {
	spec := r.Health()
	_, reports := rc.(reconcile.HealthReporter)
	if spec == nil && !reports {
		return nil
	}
	h := &health{digest: digest, started: true}
	track := func(role string, p *events.Probe) *probeTrack {
		if p == nil {
			return nil
		}
		t := &probeTrack{role: role, probe: p, timing: p.Timing()}
		t.next = now.Add(t.timing.InitialDelay)
		return t
	}
	if spec != nil {
		h.startup = track(probeStartup, spec.Startup)
		h.readiness = track(probeReadiness, spec.Readiness)
		h.liveness = track(probeLiveness, spec.Liveness)
		h.started = h.startup == nil
		// liveness is passing until it fails failureThreshold times
		if h.liveness != nil {
			h.liveness.passing = true
		}
	}
	h.backoff.initial, h.backoff.max, h.backoff.resetAfter = spec.Backoff()
	if reports {
		h.kind = &probeTrack{role: probeKind, passing: true, next: now.Add(time.Second),
			timing: events.Timing{Period: kindHealthPeriod, SuccessThreshold: 1, FailureThreshold: 1}}
	}
	return h
}

// wasReady is newHealth for a resource the log says is Ready (an agent
// restarted): its startup passed and its readiness holds until it fails
// failureThreshold times, as if the probes had run all along.
func (h *health) wasReady() {
	if h == nil {
		return
	}
	h.started = true
	if h.startup != nil {
		h.startup.passing = true
	}
	if h.readiness != nil {
		h.readiness.passing = true
	}
}

// tracks returns the probes that run now: the startup probe until it
// passed, then readiness and liveness; the kind's own health always. They
// are put in buf, so the loop, which asks every step for every resource,
// allocates nothing for it.
func (h *health) tracks(buf *[3]*probeTrack) []*probeTrack {
	ts := buf[:0]
	if !h.started {
		ts = append(ts, h.startup)
	} else {
		if h.readiness != nil {
			ts = append(ts, h.readiness)
		}
		if h.liveness != nil {
			ts = append(ts, h.liveness)
		}
	}
	if h.kind != nil {
		ts = append(ts, h.kind)
	}
	return ts
}

// record takes one probe outcome at now: a startup pass lets readiness and
// liveness start; a liveness (or startup) failure past its threshold asks
// for a restart after the backoff; the kind's restart count is watched for
// a crash loop.
func (h *health) record(t *probeTrack, ok bool, output string, restarts int, now time.Time) {
	changed := t.observe(ok, output, now)
	switch t.role {
	case probeStartup:
		if t.passing {
			h.started = true
			for _, p := range []*probeTrack{h.readiness, h.liveness} {
				if p != nil {
					p.next = now.Add(p.timing.InitialDelay)
				}
			}
		} else if changed || t.fail == t.timing.FailureThreshold {
			h.askRestart(t, now)
		}
	case probeLiveness:
		if !t.passing && t.fail == t.timing.FailureThreshold {
			h.askRestart(t, now)
		}
	case probeKind:
		if restarts < 0 {
			return // the tool could not say
		}
		h.kindRestarts = append(h.kindRestarts, restartSample{now, restarts})
		for len(h.kindRestarts) > 1 && now.Sub(h.kindRestarts[1].at) >= crashLoopWindow {
			h.kindRestarts = h.kindRestarts[1:]
		}
		first := h.kindRestarts[0]
		h.crashLooping = restarts-first.count >= crashLoopRestarts && now.Sub(first.at) <= crashLoopWindow
		if !h.crashLooping && now.Sub(first.at) > crashLoopWindow {
			h.kindRestarts = h.kindRestarts[len(h.kindRestarts)-1:]
		}
	}
}

// askRestart schedules a restart, unless one is due already.
func (h *health) askRestart(t *probeTrack, now time.Time) {
	if !h.nextRestart.IsZero() {
		return
	}
	h.nextRestart = now.Add(h.backoff.next(now))
	h.restartWhy = t
}

// restarted resets the probes after a restart at now: startup runs again
// (if any), readiness must pass again, liveness starts passing.
func (h *health) restarted(now time.Time) {
	h.restarts++
	h.nextRestart, h.restartWhy = time.Time{}, nil
	for _, t := range []*probeTrack{h.startup, h.readiness, h.liveness} {
		if t != nil {
			t.succ, t.fail, t.running = 0, 0, false
			t.next = now.Add(t.timing.InitialDelay)
		}
	}
	if h.startup != nil {
		h.started, h.startup.passing = false, false
	}
	if h.liveness != nil {
		h.liveness.passing = true
	}
}

// verdict says whether the resource is healthy and, if not, which probe
// says not, the reason and the probe's last output.
func (h *health) verdict() (ok bool, probe, reason, output string, failures int) {
	switch {
	case h.kind != nil && !h.kind.passing:
		return false, probeKind, h.kind.reason, h.kind.output, h.kind.fail
	case h.crashLooping:
		return false, probeKind, ReasonCrashLooping, h.kind.output, h.kind.fail
	case !h.started:
		if h.startup.fail >= h.startup.timing.FailureThreshold {
			return false, probeStartup, ReasonStartupFailed, h.startup.output, h.startup.fail
		}
		return false, probeStartup, ReasonAwaitingReadiness, h.startup.output, h.startup.fail
	case h.liveness != nil && !h.liveness.passing:
		return false, probeLiveness, ReasonLivenessFailed, h.liveness.output, h.liveness.fail
	case h.readiness != nil && !h.readiness.passing:
		if h.readiness.total == 0 {
			return false, probeReadiness, ReasonAwaitingReadiness, h.readiness.output, 0
		}
		return false, probeReadiness, ReasonReadinessFailed, h.readiness.output, h.readiness.fail
	}
	return true, "", "", "", 0
}

// due returns the earliest time a probe or restart of h is due (zero: none).
func (h *health) due() time.Time {
	var at time.Time
	var buf [3]*probeTrack
	for _, t := range h.tracks(&buf) {
		if !t.running && (at.IsZero() || t.next.Before(at)) {
			at = t.next
		}
	}
	if !h.nextRestart.IsZero() && (at.IsZero() || h.nextRestart.Before(at)) {
		at = h.nextRestart
	}
	return at
}
