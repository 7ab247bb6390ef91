package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// TestSecondAgentOnAStateInUseTouchesNothing: a second agent on a state
// directory in use (say `fleet agent --deregister` beside the daemon) is
// refused by the store's lock before it touches anything else there: the
// running agent's spares stay ready.
func TestSecondAgentOnAStateInUseTouchesNothing(t *testing.T) {
	is := is.New(t)
	state, root := t.TempDir(), t.TempDir()
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	a, err := New("lock-01", WithStateDir(state), WithRoot(root), quiet)
	is.NoErr(err)
	defer a.Close()
	f := a.recs[events.KindFile].(*reconcile.File)
	_, err = f.Apply(context.Background(), reconcile.Target{Generation: 1, Resource: events.Resource{ID: "a", Kind: events.KindFile,
		File: &events.FileSpec{Path: "/etc/a.conf", Content: "a\n"}}})
	is.NoErr(err)
	f.WaitSpares()
	fresh := filepath.Join(state, "spares", "fresh")
	before, err := os.ReadDir(fresh)
	is.NoErr(err)
	is.Equal(len(before), 1) // one spare ready

	_, err = New("lock-01", WithStateDir(state), WithRoot(root), quiet)
	is.True(err != nil) // the store is locked
	after, err := os.ReadDir(fresh)
	is.NoErr(err)
	is.Equal(len(after), 1)
	is.Equal(after[0].Name(), before[0].Name()) // the same spare, untouched
}

// TestSecondAgentNamesThePIDHoldingTheState: an agent on a state directory
// another process holds says "in use by PID N (its command line)" and what
// to do, not "resource temporarily unavailable".
func TestSecondAgentNamesThePIDHoldingTheState(t *testing.T) {
	if dir := os.Getenv("FLEET_TEST_HOLD_STATE"); dir != "" { // the other process
		a, err := New("lock-02", WithStateDir(dir), WithRoot(t.TempDir()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		os.Stdout.WriteString("held\n")
		_, _ = io.Copy(io.Discard, os.Stdin) // until the test closes it
		return
	}
	is := is.New(t)
	state := t.TempDir()
	holder := func(prog ...string) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
		cmd := exec.Command(prog[0], append(prog[1:], "-test.run=^TestSecondAgentNamesThePIDHoldingTheState$")...)
		cmd.Env = append(os.Environ(), "FLEET_TEST_HOLD_STATE="+state)
		stdin, err := cmd.StdinPipe()
		is.NoErr(err)
		out, err := cmd.StdoutPipe()
		is.NoErr(err)
		return cmd, stdin, out, cmd.Start()
	}
	cmd, stdin, out, err := holder(os.Args[0])
	if qemu, lerr := exec.LookPath("qemu-" + runtime.GOARCH); errors.Is(err, syscall.ENOEXEC) && lerr == nil {
		// this test binary runs under qemu-user (CI's 32-bit ARM job, no
		// binfmt): the second process is this binary under qemu too
		cmd, stdin, out, err = holder(qemu, os.Args[0])
	}
	is.NoErr(err)
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	is.NoErr(err)
	is.Equal(line, "held\n")

	_, err = New("lock-02", WithStateDir(state), WithRoot(t.TempDir()), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	is.True(err != nil)
	t.Log(err)
	is.True(strings.Contains(err.Error(), fmt.Sprintf("--state %s is in use by PID %d (", state, cmd.Process.Pid)))
	is.True(strings.Contains(err.Error(), "systemctl stop"))
}
