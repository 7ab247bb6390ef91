package reconcile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
)

func execTarget(gen int64, timeout string, argv ...string) reconcile.Target {
	return reconcile.Target{Generation: gen, Resource: events.Resource{ID: "job", Kind: events.KindExec,
		Exec: &events.ExecSpec{Argv: argv, Timeout: timeout}}}
}

// countRuns returns an argv appending a line to a file per run, and a counter.
func countRuns(t *testing.T) ([]string, func() int) {
	log := filepath.Join(t.TempDir(), "runs")
	return []string{"sh", "-c", `echo ran >> "$0"`, log}, func() int {
		b, err := os.ReadFile(log)
		if err != nil {
			return 0
		}
		return strings.Count(string(b), "ran\n")
	}
}

func TestExecContract(t *testing.T) {
	reconciletest.Run(t, reconciletest.Case{New: func(t *testing.T) reconciletest.Subject {
		state := t.TempDir()
		argv, _ := countRuns(t)
		next := execTarget(2, "", argv...)
		return reconciletest.Subject{
			Reconciler: reconcile.NewExec(state, true),
			Target:     execTarget(1, "", argv...),
			Changed:    &next,
			Tamper: func(t *testing.T) {
				// The agent's record of the run is lost.
				if err := os.RemoveAll(filepath.Join(state, "exec", "job")); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

func TestExecRefusedUnlessAllowed(t *testing.T) {
	is := is.New(t)
	argv, runs := countRuns(t)
	r := reconcile.NewExec(t.TempDir(), false)
	tg := execTarget(1, "", argv...)
	_, err := r.Observe(context.Background(), tg)
	var re *reconcile.RefusedError
	is.True(errors.As(err, &re))
	is.Equal(re.Reason, "ExecNotAllowed")
	_, err = r.Apply(context.Background(), tg)
	is.True(errors.As(err, &re))
	is.Equal(re.Reason, "ExecNotAllowed")
	is.True(errors.Is(err, reconcile.ErrRefused))
	is.Equal(runs(), 0)                          // nothing ran
	is.NoErr(r.Delete(context.Background(), tg)) // forgetting needs no permission
}

func TestExecRunsOncePerGeneration(t *testing.T) {
	is := is.New(t)
	argv, runs := countRuns(t)
	state := t.TempDir()
	r := reconcile.NewExec(state, true)
	ctx := context.Background()
	d, err := r.Observe(ctx, execTarget(1, "", argv...))
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "run", Expected: "generation 1", Observed: "not run"}})
	for range 3 {
		_, err := r.Apply(ctx, execTarget(1, "", argv...))
		is.NoErr(err)
	}
	is.Equal(runs(), 1)
	res, err := r.Apply(ctx, execTarget(2, "", argv...))
	is.NoErr(err)
	is.True(res.Changed)
	is.Equal(*res.ExitCode, 0)
	is.Equal(runs(), 2)
	entries, err := os.ReadDir(filepath.Join(state, "exec", "job"))
	is.NoErr(err)
	is.Equal(len(entries), 1) // only the newest generation's marker is kept
	is.Equal(entries[0].Name(), "2")
}

func TestExecArgvIsNotAShellString(t *testing.T) {
	is := is.New(t)
	r := reconcile.NewExec(t.TempDir(), true)
	res, err := r.Apply(context.Background(), execTarget(1, "", "echo", "$HOME; echo injected"))
	is.NoErr(err)
	is.Equal(res.Output, "$HOME; echo injected\n") // passed as one argument, not interpreted
}

func TestExecFailureReportsExitStatusAndRunsAgain(t *testing.T) {
	is := is.New(t)
	r := reconcile.NewExec(t.TempDir(), true)
	tg := execTarget(1, "", "sh", "-c", "echo oops; exit 3")
	res, err := r.Apply(context.Background(), tg)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "exit status 3"))
	is.Equal(*res.ExitCode, 3)
	is.Equal(res.Output, "oops\n")
	d, err := r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(len(d), 1) // a failed run does not count as run
}

func TestExecOutputIsBounded(t *testing.T) {
	is := is.New(t)
	r := reconcile.NewExec(t.TempDir(), true)
	res, err := r.Apply(context.Background(), execTarget(1, "", "sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; echo err >&2"))
	is.NoErr(err)
	is.True(strings.HasPrefix(res.Output, strings.Repeat("a", reconcile.MaxExecOutput)))
	is.True(strings.HasSuffix(res.Output, "\n[truncated: 5908 more bytes]"))
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	is := is.New(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := reconcile.NewExec(t.TempDir(), true)
	// The shell starts a grandchild in the background and waits for it.
	tg := execTarget(1, "300ms", "sh", "-c", `sleep 60 & echo $! > "$0"; wait`, pidFile)
	res, err := r.Apply(context.Background(), tg)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "timed out after 300ms"))
	is.True(res.ExitCode == nil) // killed by a signal, no exit status
	b, err := os.ReadFile(pidFile)
	is.NoErr(err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	is.NoErr(err)
	is.True(processGone(pid)) // the grandchild was killed with its group
}

// processGone reports whether pid has exited (gone or a zombie), waiting a
// little for the kernel to deliver the kill.
func processGone(pid int) bool {
	for range 50 {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// Field 3, after the parenthesised command name, is the state.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && len(s) > i+2 && s[i+2] == 'Z' {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
