package events

import (
	"strconv"
	"strings"
	"time"
)

// HealthSpec is a resource's optional `health:` (container and systemdUnit
// kinds, inside their spec): the probes the agent runs on its own scheduler
// and how it backs off restarting a resource whose liveness fails. Names and
// defaults are kubelet's (initialDelay 0, period 10s, timeout 1s,
// successThreshold 1, failureThreshold 3); durations are Go durations.
//
//   - readiness: the resource is Ready only after it passed, and stops being
//     Ready after failureThreshold failures in a row.
//   - liveness: failureThreshold failures in a row restart the resource
//     (podman restart, systemctl restart), backing off per restartBackoff.
//   - startup: until it passed once, liveness and readiness do not run.
type HealthSpec struct {
	Readiness      *Probe          `json:"readiness,omitempty"`
	Liveness       *Probe          `json:"liveness,omitempty"`
	Startup        *Probe          `json:"startup,omitempty"`
	RestartBackoff *RestartBackoff `json:"restartBackoff,omitempty"`
}

// Probe is one check: exactly one of Exec, HTTP, TCP, and its timing.
type Probe struct {
	Exec             *ExecProbe `json:"exec,omitempty"`
	HTTP             *HTTPProbe `json:"http,omitempty"`
	TCP              *TCPProbe  `json:"tcp,omitempty"`
	InitialDelay     string     `json:"initialDelay,omitempty"`     // default 0
	Period           string     `json:"period,omitempty"`           // default 10s
	Timeout          string     `json:"timeout,omitempty"`          // default 1s
	SuccessThreshold int        `json:"successThreshold,omitempty"` // default 1; 1 for liveness and startup
	FailureThreshold int        `json:"failureThreshold,omitempty"` // default 3
}

// ExecProbe runs a program (an argv, never a shell string) on the device; it
// passes when it exits 0. Only an agent started with exec allowed runs it.
type ExecProbe struct {
	Argv []string `json:"argv"`
}

// HTTPProbe GETs a URL on the device (host localhost or a loopback address);
// it passes when the status is in Status ("200-399" by default, or "204").
type HTTPProbe struct {
	URL    string `json:"url"`
	Status string `json:"status,omitempty"`
}

// TCPProbe connects to a port on the device; it passes when the connection
// opens. Host is a loopback address or localhost (default 127.0.0.1).
type TCPProbe struct {
	Host string `json:"host,omitempty"`
	Port int    `json:"port"`
}

// RestartBackoff is the delay between liveness restarts: Initial doubling
// to Max, back to Initial after ResetAfter healthy.
type RestartBackoff struct {
	Initial    string `json:"initial,omitempty"`    // default 1s, 100ms..1m
	Max        string `json:"max,omitempty"`        // default 60s, initial..5m
	ResetAfter string `json:"resetAfter,omitempty"` // default 10m, 1m..24h
}

// Probe and backoff defaults (kubelet's names and values; the restart
// backoff is KEP-4603's 1 s start and 60 s cap, reset after 10 minutes).
const (
	DefaultProbePeriod       = 10 * time.Second
	DefaultProbeTimeout      = time.Second
	DefaultSuccessThreshold  = 1
	DefaultFailureThreshold  = 3
	DefaultRestartInitial    = time.Second
	DefaultRestartMax        = 60 * time.Second
	DefaultRestartResetAfter = 10 * time.Minute
	DefaultHTTPStatus        = "200-399"
)

// Bounds of the health fields, quoted by validation.
const (
	MinProbePeriod     = time.Second
	MaxProbePeriod     = time.Hour
	MinProbeTimeout    = 100 * time.Millisecond
	MaxProbeTimeout    = time.Minute
	MaxInitialDelay    = time.Hour
	MaxThreshold       = 100
	MinRestartInitial  = 100 * time.Millisecond
	MaxRestartInitial  = time.Minute
	MaxRestartMax      = 5 * time.Minute
	MinRestartReset    = time.Minute
	MaxRestartReset    = 24 * time.Hour
	MaxProbeArgs       = 64
	MaxProbeURLBytes   = 2048
	MaxProbeOutputRead = 4 << 10 // bytes of a probe's output the agent keeps
)

// Kind reports the probe's kind: "exec", "http", "tcp" or "" (none set).
func (p *Probe) Kind() string {
	switch {
	case p.Exec != nil:
		return "exec"
	case p.HTTP != nil:
		return "http"
	case p.TCP != nil:
		return "tcp"
	}
	return ""
}

// Timing is a probe's timing with defaults applied (fields validated).
type Timing struct {
	InitialDelay, Period, Timeout      time.Duration
	SuccessThreshold, FailureThreshold int
}

// Timing returns p's timing with defaults applied.
func (p *Probe) Timing() Timing {
	t := Timing{
		InitialDelay: durOr(p.InitialDelay, 0), Period: durOr(p.Period, DefaultProbePeriod),
		Timeout: durOr(p.Timeout, DefaultProbeTimeout), SuccessThreshold: p.SuccessThreshold,
		FailureThreshold: p.FailureThreshold,
	}
	if t.SuccessThreshold <= 0 {
		t.SuccessThreshold = DefaultSuccessThreshold
	}
	if t.FailureThreshold <= 0 {
		t.FailureThreshold = DefaultFailureThreshold
	}
	return t
}

// Backoff returns the restart backoff with defaults applied: initial, cap,
// reset after.
func (h *HealthSpec) Backoff() (initial, max, resetAfter time.Duration) {
	b := RestartBackoff{}
	if h != nil && h.RestartBackoff != nil {
		b = *h.RestartBackoff
	}
	return durOr(b.Initial, DefaultRestartInitial), durOr(b.Max, DefaultRestartMax), durOr(b.ResetAfter, DefaultRestartResetAfter)
}

// StatusRange returns the accepted HTTP status range (validated).
func (p *HTTPProbe) StatusRange() (lo, hi int) {
	lo, hi, _ = parseStatusRange(p.Status)
	return lo, hi
}

func parseStatusRange(s string) (lo, hi int, ok bool) {
	if s == "" {
		s = DefaultHTTPStatus
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := lo, error(nil)
	if isRange {
		hi, err2 = strconv.Atoi(b)
	}
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}

func durOr(s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	if d, err := time.ParseDuration(s); err == nil {
		return d
	}
	return def
}

// Health returns the resource's health spec, or nil when it has none or
// its kind takes none.
func (r *Resource) Health() *HealthSpec {
	k, _ := r.specOf()
	if k == nil || k.health == nil {
		return nil
	}
	return k.health(r)
}

// TakesHealth reports whether resources of the kind may have a health spec.
func (k *Kind) TakesHealth() bool { return k.health != nil }
