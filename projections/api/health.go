package api

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Check is one part's health: OK, or why not and what to do.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
	Action string `json:"action,omitempty"`
	Detail any    `json:"detail,omitempty"`
}

// healthChecks are the checks /healthz runs besides the projection service's own.
type healthChecks struct {
	mu       sync.Mutex
	fns      []func() Check
	maxStall time.Duration // 0: DefaultMaxStall
}

// DefaultMaxStall is how long the read models may stand still while the
// stream has events past them before /healthz fails.
const DefaultMaxStall = time.Minute

// WithMaxStall sets how long the projection service may not advance while
// the stream has before /healthz answers 503 (default DefaultMaxStall).
func WithMaxStall(d time.Duration) ServerOption { return func(a *Server) { a.checks.maxStall = d } }

// AddCheck makes /healthz run fn too (the JetStream server, the time-travel
// index): /healthz fails when any check fails. Safe for concurrent use.
func (a *Server) AddCheck(fn func() Check) {
	a.checks.mu.Lock()
	a.checks.fns = append(a.checks.fns, fn)
	a.checks.mu.Unlock()
}

// maxHealthyLag is the lag past which /healthz fails: the read models are
// too far behind the log to answer for it.
const maxHealthyLag = 10000

// Health runs every check: the projection service's (it applies the log,
// the log did not go backwards, lag within maxHealthyLag) and the added ones.
func (a *Server) Health() (ok bool, checks []Check) {
	st := a.svc.Stats()
	h := a.svc.Health()
	pc := Check{Name: "projections", OK: h.OK, Reason: h.Reason, Action: h.Action, Detail: h}
	if pc.OK && st.Lag > maxHealthyLag {
		pc.OK, pc.Reason = false, "the read models are more than 10,000 events behind the log"
		pc.Action = "wait for them to catch up; if the lag keeps growing, see 'fleet project --status'"
	}
	checks = append(checks, pc)
	stall := a.checks.maxStall
	if stall <= 0 {
		stall = DefaultMaxStall
	}
	sc := Check{Name: "projections-advancing", OK: true}
	if why := a.svc.Stalled(stall); why != "" {
		sc.OK, sc.Reason = false, why
		sc.Action = "see the server's log for 'projections: consuming the log failed' and its cause " +
			"(the NATS user's permissions on FLEET, the server's health, the read models' disk); 'fleet project --status' shows the lag"
	}
	checks = append(checks, sc)
	a.checks.mu.Lock()
	fns := append([]func() Check(nil), a.checks.fns...)
	a.checks.mu.Unlock()
	for _, fn := range fns {
		checks = append(checks, fn())
	}
	ok = true
	for _, c := range checks {
		ok = ok && c.OK
	}
	return ok, checks
}

// HealthReport is what /healthz answers (and the micro service's health
// endpoint): every check, and the first failed one's reason and action.
type HealthReport struct {
	OK         bool    `json:"ok"`
	Checkpoint uint64  `json:"checkpoint"`
	Lag        uint64  `json:"lag"`
	Checks     []Check `json:"checks"`
	Reason     string  `json:"reason,omitempty"`
	Action     string  `json:"action,omitempty"`
}

// HealthReport runs every check (Health) into a HealthReport.
func (a *Server) HealthReport() HealthReport {
	ok, checks := a.Health()
	st := a.svc.Stats()
	r := HealthReport{OK: ok, Checkpoint: st.Checkpoint, Lag: st.Lag, Checks: checks}
	for _, c := range checks {
		if !c.OK {
			r.Reason, r.Action = c.Name+": "+c.Reason, c.Action
			break
		}
	}
	return r
}

// Health asks the service for its HealthReport over NATS.
func (c *Client) Health(ctx context.Context) (HealthReport, error) {
	var out HealthReport
	return out, c.call(ctx, EpHealth, Request{}, &out)
}

// healthz is GET /healthz: 200 when every check passes, else 503; the body
// names each check, and for a failed one the reason and what to do.
func (a *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	body := a.HealthReport()
	if !body.OK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	writeJSON(w, body)
}
