package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// ReasonExecNotAllowed is the refusal reason of an exec resource on an agent
// started without --allow-exec.
const ReasonExecNotAllowed = "ExecNotAllowed"

// MaxExecOutput bounds the output of an exec run kept for the attempt event.
const MaxExecOutput = 4 << 10

// Exec reconciles exec resources, the escape hatch: it runs the spec's argv
// (never through a shell) once per generation, with the spec's timeout,
// killing the whole process group when it expires. A successful run leaves
// a marker at <StateDir>/exec/<resource>/<generation>, so the next Apply of
// the same generation runs nothing. Unless allowed, every call but Delete is
// refused with reason ExecNotAllowed and nothing runs.
type Exec struct {
	stateDir string
	allow    bool
}

// NewExec returns the exec reconciler keeping its run markers under stateDir.
func NewExec(stateDir string, allow bool) *Exec { return &Exec{stateDir: stateDir, allow: allow} }

// Kind returns events.KindExec.
func (*Exec) Kind() string { return events.KindExec }

var _ AttemptTimer = (*Exec)(nil)

// AttemptTimeout gives a run the spec's timeout and 10 s to record it, at
// least agentTimeout (AttemptTimer).
func (*Exec) AttemptTimeout(t Target, agentTimeout time.Duration) time.Duration {
	if e := t.Resource.Exec; e != nil {
		return max(agentTimeout, e.TimeoutOrDefault()+10*time.Second)
	}
	return agentTimeout
}

func (r *Exec) check(t Target, needAllow bool) (*events.ExecSpec, string, error) {
	e := t.Resource.Exec
	if e == nil {
		return nil, "", fmt.Errorf("resource %s: not an exec resource (kind %q)", t.Resource.ID, t.Resource.Kind)
	}
	if !events.ValidID(t.Resource.ID) {
		return nil, "", fmt.Errorf("resource id %q: must be %s", t.Resource.ID, events.IDRule)
	}
	if needAllow && !r.allow {
		return nil, "", &RefusedError{Reason: ReasonExecNotAllowed, Detail: fmt.Sprintf("resource %s: exec resources need an agent started with --allow-exec", t.Resource.ID)}
	}
	if len(e.Argv) == 0 || e.Argv[0] == "" {
		return nil, "", fmt.Errorf("resource %s: exec.argv: must name a program and its arguments", t.Resource.ID)
	}
	if r.stateDir == "" {
		return nil, "", errors.New("exec: no state directory configured")
	}
	return e, filepath.Join(r.stateDir, "exec", t.Resource.ID), nil
}

func markerName(gen int64) string { return strconv.FormatInt(gen, 10) }

// Observe reports Field "run" (Expected "generation N", Observed "not run")
// when this generation has not run successfully yet.
func (r *Exec) Observe(ctx context.Context, t Target) ([]events.Difference, error) {
	_, dir, err := r.check(t, true)
	if err != nil {
		return nil, err
	}
	_, err = os.Stat(filepath.Join(dir, markerName(t.Generation)))
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("exec %s: %w", t.Resource.ID, err)
	}
	return []events.Difference{{Field: "run", Expected: fmt.Sprintf("generation %d", t.Generation), Observed: "not run"}}, nil
}

// execRecord is the content of a run marker.
type execRecord struct {
	Generation int64     `json:"generation"`
	Argv       []string  `json:"argv"`
	ExitCode   int       `json:"exitCode"`
	At         time.Time `json:"at"`
}

// Apply runs argv if this generation has not run successfully yet. Result
// carries the bounded combined output and the exit code; Changed is true
// whenever the program ran. A non-zero exit or a timeout is an error (no
// marker is written, so the next attempt runs it again).
func (r *Exec) Apply(ctx context.Context, t Target) (Result, error) {
	e, dir, err := r.check(t, true)
	if err != nil {
		return Result{}, err
	}
	marker := filepath.Join(dir, markerName(t.Generation))
	if _, err := os.Stat(marker); err == nil {
		return Result{}, nil
	}
	timeout := e.TimeoutOrDefault()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, e.Argv[0], e.Argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second // a child holding the output pipe open cannot hang us
	out := &boundedBuffer{max: MaxExecOutput}
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	res := Result{Changed: cmd.Process != nil, Output: out.String()}
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() >= 0 {
		code := cmd.ProcessState.ExitCode()
		res.ExitCode = &code
	}
	switch {
	case cmd.Process == nil:
		return res, fmt.Errorf("exec %s: %w", e.Argv[0], runErr)
	case errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return res, fmt.Errorf("exec %s: timed out after %s: process group killed", e.Argv[0], timeout)
	case ctx.Err() != nil:
		return res, fmt.Errorf("exec %s: %w: process group killed", e.Argv[0], ctx.Err())
	case runErr != nil && res.ExitCode != nil && *res.ExitCode != 0:
		return res, fmt.Errorf("exec %s: exit status %d", e.Argv[0], *res.ExitCode)
	case runErr != nil:
		return res, fmt.Errorf("exec %s: %w", e.Argv[0], runErr)
	}
	rec, _ := json.Marshal(execRecord{Generation: t.Generation, Argv: e.Argv, ExitCode: 0, At: time.Now().UTC()})
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return res, fmt.Errorf("exec %s: record run: %w", t.Resource.ID, err)
	}
	if err := writeAtomic(dir, markerName(t.Generation), rec, 0o600, -1, -1); err != nil {
		return res, fmt.Errorf("exec %s: record run: %w", t.Resource.ID, err)
	}
	// Only the newest generation's marker matters.
	if entries, err := os.ReadDir(dir); err == nil {
		for _, en := range entries {
			if en.Name() != markerName(t.Generation) {
				os.Remove(filepath.Join(dir, en.Name()))
			}
		}
	}
	return res, nil
}

// Delete forgets the resource's run markers; what the program did is not
// undone. Deleting twice succeeds; it needs no --allow-exec.
func (r *Exec) Delete(ctx context.Context, t Target) error {
	_, dir, err := r.check(t, false)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("exec %s: %w", t.Resource.ID, err)
	}
	return nil
}

// boundedBuffer keeps the first max bytes written and counts the rest.
type boundedBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - len(b.buf)
	if room > len(p) {
		room = len(p)
	}
	if room > 0 {
		b.buf = append(b.buf, p[:room]...)
	}
	b.dropped += len(p) - max(room, 0)
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped == 0 {
		return string(b.buf)
	}
	return string(b.buf) + fmt.Sprintf("\n[truncated: %d more bytes]", b.dropped)
}
