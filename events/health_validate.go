package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
)

// validateHealth checks a health spec; field is its path ("container.health").
func validateHealth(h *HealthSpec, field string, c *specCheck) {
	if h == nil {
		return
	}
	for _, p := range []struct {
		name string
		p    *Probe
	}{{"readiness", h.Readiness}, {"liveness", h.Liveness}, {"startup", h.Startup}} {
		if p.p != nil {
			validateProbe(p.p, field+"."+p.name, p.name != "readiness", c)
		}
	}
	if b := h.RestartBackoff; b != nil {
		f := field + ".restartBackoff"
		initial := checkDur(c, f+".initial", b.Initial, MinRestartInitial, MaxRestartInitial)
		if initial == 0 {
			initial = DefaultRestartInitial
		}
		if m := checkDur(c, f+".max", b.Max, initial, MaxRestartMax); m == 0 && b.Max == "" && initial > DefaultRestartMax {
			c.bad(f+".max", "must be set when initial exceeds the default cap %s", DefaultRestartMax)
		}
		checkDur(c, f+".resetAfter", b.ResetAfter, MinRestartReset, MaxRestartReset)
	}
}

// checkDur checks an optional duration field against [lo, hi]; it returns
// the parsed value, 0 when unset or bad.
func checkDur(c *specCheck, field, s string, lo, hi time.Duration) time.Duration {
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < lo || d > hi {
		c.bad(field, "%q must be a duration from %s to %s, such as %s", s, lo, hi, lo*2)
		return 0
	}
	return d
}

// shells are programs that take a command line as a string: a probe names
// the program itself instead.
var shells = map[string]bool{"sh": true, "bash": true, "dash": true, "zsh": true, "ash": true, "ksh": true, "busybox": true}

func validateProbe(p *Probe, field string, oneSuccess bool, c *specCheck) {
	n := 0
	for _, set := range []bool{p.Exec != nil, p.HTTP != nil, p.TCP != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		c.bad(field, "must have exactly one of exec, http, tcp (has %d)", n)
	}
	if e := p.Exec; e != nil {
		validateProbeArgv(e.Argv, field+".exec.argv", c)
	}
	if h := p.HTTP; h != nil {
		validateProbeURL(h.URL, field+".http.url", c)
		if _, _, ok := parseStatusRange(h.Status); !ok {
			c.bad(field+".http.status", "%q must be a status or range from 100 to 599, such as 200-399", h.Status)
		}
	}
	if t := p.TCP; t != nil {
		if t.Port < 1 || t.Port > 65535 {
			c.bad(field+".tcp.port", "%d must be a port from 1 to 65535", t.Port)
		}
		if t.Host != "" && !loopbackHost(t.Host) {
			c.bad(field+".tcp.host", "%q must be on the device: localhost or a loopback address", t.Host)
		}
	}
	checkDur(c, field+".initialDelay", p.InitialDelay, 0, MaxInitialDelay)
	period := checkDur(c, field+".period", p.Period, MinProbePeriod, MaxProbePeriod)
	if period == 0 {
		period = DefaultProbePeriod
	}
	if timeout := checkDur(c, field+".timeout", p.Timeout, MinProbeTimeout, MaxProbeTimeout); timeout > period {
		c.bad(field+".timeout", "%q must not exceed the period %s", p.Timeout, period)
	}
	if p.SuccessThreshold < 0 || p.SuccessThreshold > MaxThreshold {
		c.bad(field+".successThreshold", "%d must be from 1 to %d", p.SuccessThreshold, MaxThreshold)
	} else if oneSuccess && p.SuccessThreshold > 1 {
		c.bad(field+".successThreshold", "%d must be 1 for liveness and startup probes", p.SuccessThreshold)
	}
	if p.FailureThreshold < 0 || p.FailureThreshold > MaxThreshold {
		c.bad(field+".failureThreshold", "%d must be from 1 to %d", p.FailureThreshold, MaxThreshold)
	}
}

func validateProbeArgv(argv []string, field string, c *specCheck) {
	switch {
	case len(argv) == 0 || argv[0] == "":
		c.bad(field, "must name a program and its arguments (a list, never a shell string)")
		return
	case len(argv) > MaxProbeArgs:
		c.bad(field, "has %d arguments: must have at most %d", len(argv), MaxProbeArgs)
	case strings.ContainsAny(argv[0], " \t\n"):
		c.bad(field+"[0]", "%q is a shell string: give the program and each argument as its own list item, such as [\"/usr/bin/curl\", \"-f\", \"http://127.0.0.1/\"]", argv[0])
	case shells[path.Base(argv[0])] && len(argv) > 1 && argv[1] == "-c":
		c.bad(field, "runs a shell command line (%s -c): give the program and its arguments as a list", argv[0])
	}
	for j, a := range argv {
		if strings.ContainsRune(a, 0) {
			c.bad(fmt.Sprintf("%s[%d]", field, j), "must not contain a NUL byte")
		}
	}
}

func validateProbeURL(raw, field string, c *specCheck) {
	u, err := url.Parse(raw)
	switch {
	case len(raw) > MaxProbeURLBytes:
		c.bad(field, "is %d bytes: must be at most %d", len(raw), MaxProbeURLBytes)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		c.bad(field, "%q must be an http:// or https:// URL such as http://127.0.0.1:8080/healthz", raw)
	case u.User != nil:
		c.bad(field, "%q must not carry credentials", raw)
	case !loopbackHost(u.Hostname()):
		c.bad(field, "%q must be on the device: host localhost or a loopback address (127.0.0.1, ::1)", raw)
	}
}

// loopbackHost reports whether host names the device itself.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// The fields a strict manifest allows at each level of a health spec.
var healthFields = map[string][]string{
	"health":         {"readiness", "liveness", "startup", "restartBackoff"},
	"probe":          {"exec", "http", "tcp", "initialDelay", "period", "timeout", "successThreshold", "failureThreshold"},
	"exec":           {"argv"},
	"http":           {"url", "status"},
	"tcp":            {"host", "port"},
	"restartBackoff": {"initial", "max", "resetAfter"},
}

// strictHealth reports the first unknown field of a kind's spec's health
// object, by its full path and the fields allowed there: what the standard
// decoder's "unknown field" error cannot say. spec is the kind's raw spec.
func strictHealth(kind string, spec json.RawMessage) error {
	var top map[string]json.RawMessage
	if json.Unmarshal(spec, &top) != nil {
		return nil // the standard decoder says what is wrong
	}
	h, ok := top["health"]
	if !ok {
		return nil
	}
	return strictObject(kind+".health", "health", h)
}

func strictObject(field, level string, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if bytes.Equal(raw, []byte("null")) {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf(".%s: must be an object", field)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	allowed := healthFields[level]
	for _, k := range keys {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			what := "unknown field"
			if level == "probe" {
				what = "unknown probe field or kind"
			}
			return fmt.Errorf(".%s.%s: %s (allowed: %s)", field, k, what, strings.Join(allowed, ", "))
		}
		next := ""
		switch {
		case level == "health" && k == "restartBackoff":
			next = "restartBackoff"
		case level == "health":
			next = "probe"
		case level == "probe" && (k == "exec" || k == "http" || k == "tcp"):
			next = k
		}
		if next != "" {
			if err := strictObject(field+"."+k, next, m[k]); err != nil {
				return err
			}
		}
	}
	return nil
}
