package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// execRes is an exec resource that appends a line to countFile on each run
// and prints "ran".
func execRes(id, countFile, timeout string) events.Resource {
	return events.Resource{ID: id, Kind: events.KindExec, Exec: &events.ExecSpec{
		Argv: []string{"sh", "-c", `echo run >> "$0"; echo ran`, countFile}, Timeout: timeout}}
}

func runs(t *testing.T, countFile string) int {
	t.Helper()
	b, err := os.ReadFile(countFile)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "run\n")
}

// TestExecAllowedRunsOncePerGeneration: with exec allowed, an exec resource
// runs once for its generation (drift checks do not run it again), its
// attempt event carries the program's output and exit code, and the next
// generation runs it once more.
func TestExecAllowedRunsOncePerGeneration(t *testing.T) {
	is := is.New(t)
	count := filepath.Join(t.TempDir(), "count")
	r := newRig(t, "ex-01", agent.WithAllowExec(true), agent.WithDriftInterval(100*time.Millisecond))
	gen1 := apply(t, r.env, "ex-01", execRes("job", count, "10s"))
	waitFor(t, 10*time.Second, "job Ready", func() bool { return allReady(r.h.Agent, 1, gen1) })
	time.Sleep(500 * time.Millisecond) // several drift checks
	is.Equal(runs(t, count), 1)        // ran once for generation 1

	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	att := ofType(deviceLog(t, r.env, "ex-01"), events.TypeReconcileAttempted, "job")
	is.Equal(len(att), 1)
	p, err := att[0].Payload()
	is.NoErr(err)
	ra := p.(*events.ReconcileAttempted)
	is.Equal(ra.Outcome, events.OutcomeSucceeded)
	is.Equal(ra.Output, "ran\n") // the attempt carries the output
	is.True(ra.ExitCode != nil)
	is.Equal(*ra.ExitCode, 0)
	is.True(ra.Changed)

	gen2 := apply(t, r.env, "ex-01", execRes("job", count, "10s"), fileRes("motd", "/etc/motd", "hi\n"))
	waitFor(t, 10*time.Second, "second run", func() bool { return runs(t, count) == 2 && allReady(r.h.Agent, 2, gen2) })
	time.Sleep(500 * time.Millisecond)
	is.Equal(runs(t, count), 2) // once for generation 2 as well
}

// TestExecNotAllowedFailsWithoutRunning: an agent started without exec
// allowed fails an exec resource with reason ExecNotAllowed, runs nothing,
// and converges the rest.
func TestExecNotAllowedFailsWithoutRunning(t *testing.T) {
	is := is.New(t)
	count := filepath.Join(t.TempDir(), "count")
	r := newRig(t, "ex-02")
	apply(t, r.env, "ex-02", execRes("job", count, ""), fileRes("motd", "/etc/motd", "hi\n"))
	waitFor(t, 10*time.Second, "job Failed, motd Ready", func() bool {
		st := r.h.Agent.Status()
		return st["job"].State == fsm.Failed && st["motd"].State == fsm.Ready
	})
	st := r.h.Agent.Status()["job"]
	is.Equal(st.Reason, reconcile.ReasonExecNotAllowed)
	is.Equal(runs(t, count), 0) // nothing ran
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "ex-02")
	checkLog(t, log)
	sc := ofType(log, events.TypeStatusChanged, "job")
	p, _ := sc[len(sc)-1].Payload()
	is.Equal(p.(*events.StatusChanged).To, string(fsm.Failed))
	is.Equal(p.(*events.StatusChanged).Reason, reconcile.ReasonExecNotAllowed) // recorded with its reason
}

// TestExecTimeoutKillsAndFails: a run longer than its timeout is killed and
// the attempt fails naming the timeout; the resource is Failed.
func TestExecTimeoutKillsAndFails(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "ex-03", agent.WithAllowExec(true), agent.WithBackoff(time.Minute, time.Minute))
	res := events.Resource{ID: "slow", Kind: events.KindExec, Exec: &events.ExecSpec{Argv: []string{"sleep", "30"}, Timeout: "300ms"}}
	apply(t, r.env, "ex-03", res)
	// killed at its timeout, not waited for (sleep 30 would outlast this wait)
	waitFor(t, 10*time.Second, "slow Failed", func() bool { return r.h.Agent.Status()["slow"].State == fsm.Failed })
	st := r.h.Agent.Status()["slow"]
	is.True(strings.Contains(st.Error, "timed out after 300ms"))
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	att := ofType(deviceLog(t, r.env, "ex-03"), events.TypeReconcileAttempted, "slow")
	is.Equal(len(att), 1)
	p, _ := att[0].Payload()
	is.Equal(p.(*events.ReconcileAttempted).Outcome, events.OutcomeFailed)
	is.True(strings.Contains(p.(*events.ReconcileAttempted).Error, "timed out"))
}

// TestExecRunsForItsOwnTimeoutBeyondTheAgentsAttemptTimeout: the agent asks
// the kind's reconciler how long an attempt may take (reconcile.AttemptTimer);
// an exec resource gets its spec's timeout even when the agent's attempt
// timeout is shorter than the program's run.
func TestExecRunsForItsOwnTimeoutBeyondTheAgentsAttemptTimeout(t *testing.T) {
	is := is.New(t)
	count := filepath.Join(t.TempDir(), "count")
	r := newRig(t, "ex-07", agent.WithAllowExec(true), agent.WithAttemptTimeout(100*time.Millisecond))
	slow := events.Resource{ID: "slow", Kind: events.KindExec, Exec: &events.ExecSpec{
		Argv: []string{"sh", "-c", `sleep 0.6; echo run >> "$0"`, count}, Timeout: "30s"}}
	gen := apply(t, r.env, "ex-07", slow)
	waitFor(t, 20*time.Second, "slow Ready", func() bool { return allReady(r.h.Agent, 1, gen) })
	is.Equal(runs(t, count), 1) // ran to its end once, not cut off at the agent's 100 ms
}
