package events

import (
	"fmt"
	"strings"
	"time"
)

// ExecSpec is the escape hatch: an argv run once per generation, only on an
// agent started with --allow-exec.
type ExecSpec struct {
	Argv    []string `json:"argv"`
	Timeout string   `json:"timeout,omitempty"` // Go duration, default 5m
}

// KindExec is the manifest key of an exec resource.
const KindExec = "exec"

// MaxExecTimeout bounds an exec resource's timeout.
const MaxExecTimeout = time.Hour

var execKind = declare(kindSpec[ExecSpec]{
	name:     KindExec,
	optIn:    true,
	field:    func(r *Resource) **ExecSpec { return &r.Exec },
	validate: validateExec,
	fast: func(b []byte, i int, x *ExecSpec) (int, bool) {
		s := scan{b: b, i: i}
		ok := s.execSpec(x)
		return s.i, ok
	},
	same: func(x, y *ExecSpec) bool { return x.Timeout == y.Timeout && sameStrings(x.Argv, y.Argv) },
	sample: func(id string, version int) *ExecSpec {
		return &ExecSpec{Argv: []string{"/usr/local/bin/migrate", "--to", fmt.Sprint(version)}, Timeout: "2m"}
	},
})

// TimeoutOrDefault returns the parsed timeout (validated by ParseManifest).
func (e ExecSpec) TimeoutOrDefault() time.Duration {
	if d, err := time.ParseDuration(e.Timeout); err == nil && d > 0 {
		return d
	}
	return 5 * time.Minute
}

// validateExec: a program to run (never a shell string), no NUL bytes, a
// bounded timeout.
func validateExec(e *ExecSpec, c *specCheck) {
	if len(e.Argv) == 0 || e.Argv[0] == "" {
		c.bad("exec.argv", "must name a program and its arguments (a list, never a shell string)")
	}
	for j, a := range e.Argv {
		if strings.ContainsRune(a, 0) {
			c.bad(fmt.Sprintf("exec.argv[%d]", j), "must not contain a NUL byte")
		}
	}
	if e.Timeout != "" {
		d, err := time.ParseDuration(e.Timeout)
		if err != nil || d <= 0 || d > MaxExecTimeout {
			c.bad("exec.timeout", "%q must be a duration from 1ms to %s, such as 30s", e.Timeout, MaxExecTimeout)
		}
	}
}

func (s *scan) execSpec(e *ExecSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "argv":
			e.Argv, ok = s.texts()
		case "timeout":
			e.Timeout, ok = s.text()
		}
		return ok
	})
}
