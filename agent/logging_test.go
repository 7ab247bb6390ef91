package agent_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// logBuffer is an agent's log output, read while it runs.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// line returns the first line holding every part, or "".
func (l *logBuffer) line(parts ...string) string {
	for _, line := range strings.Split(l.String(), "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return line
		}
	}
	return ""
}

func infoLogger() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})), buf
}

// TestAgentLogsFailuresAndDriftAtInfo: an operator reading the agent's log
// at info level sees a resource that failed, with its reason and error and
// when it is tried again, and a drift that was corrected, with what had
// changed (issue 17).
func TestAgentLogsFailuresAndDriftAtInfo(t *testing.T) {
	logger, out := infoLogger()
	r := newRig(t, "lg-01", agent.WithAllowExec(true), agent.WithDriftInterval(100*time.Millisecond), agent.WithLogger(logger))
	bad := events.Resource{ID: "job", Kind: events.KindExec, Exec: &events.ExecSpec{Argv: []string{"sh", "-c", "echo no disk >&2; exit 3"}}}
	apply(t, r.env, "lg-01", fileRes("motd", "/etc/motd", "hello\n"), bad)
	waitFor(t, 10*time.Second, "job Failed, motd Ready", func() bool {
		st := r.h.Agent.Status()
		return st["job"].State == fsm.Failed && st["motd"].State == fsm.Ready
	})
	waitFor(t, 5*time.Second, "the failure in the log", func() bool {
		return out.line("level=INFO", "resource failed", "resource=job", "reason="+agent.ReasonApplyFailed, "exit status 3", "retryIn=") != ""
	})

	if err := os.WriteFile(r.path("etc/motd"), []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the correction in the log", func() bool {
		return out.line("level=INFO", "drift: corrected", "resource=motd", "changed=") != ""
	})
	if line := out.line("level=INFO", "drift: correcting", "resource=motd"); !strings.Contains(line, "content") && !strings.Contains(line, "sha256") {
		t.Errorf("the drift's log line does not say what changed: %q", line)
	}
	t.Log(out.line("resource failed", "resource=job"))
	t.Log(out.line("drift: corrected", "resource=motd"))
	if got := readFile(t, r.path("etc/motd")); got != "hello\n" {
		t.Fatalf("motd %q after the correction", got)
	}
}

// TestAgentLogsConnectionLostAndBackAtInfo: an operator reading the agent's
// log at info sees the connection to the server lost (with the events the
// outbox holds), back (with how long it was away and what the outbox holds)
// and the outbox drained (how many events), each once per change: the
// outage spans many reconnect attempts (every 50 ms here) and none of them
// adds a line (issue 17).
func TestAgentLogsConnectionLostAndBackAtInfo(t *testing.T) {
	logger, out := infoLogger()
	r := newRig(t, "cn-01", agent.WithDriftInterval(100*time.Millisecond), agent.WithLogger(logger))
	gen := apply(t, r.env, "cn-01", fileRes("motd", "/etc/motd", "hello\n"))
	waitFor(t, 10*time.Second, "motd Ready", func() bool { return allReady(r.h.Agent, 1, gen) })
	waitFor(t, 5*time.Second, "the outbox empty", func() bool { return r.h.Agent.OutboxLen() == 0 })

	r.env.Stop()
	stopped := time.Now()
	waitFor(t, 10*time.Second, "the loss in the log", func() bool {
		return out.line("level=INFO", "connection to the server lost", "outbox=0") != ""
	})
	if err := os.WriteFile(r.path("etc/motd"), []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the drift corrected and kept in the outbox", func() bool {
		return r.h.Agent.OutboxLen() > 0 && readFile(t, r.path("etc/motd")) == "hello\n"
	})
	// about 10 reconnect attempts fail meanwhile (50 ms apart)
	waitFor(t, 10*time.Second, "the outage to last 0.6 s", func() bool { return time.Since(stopped) > 600*time.Millisecond })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the agent's log:\n%s", out.String())
		}
	})
	restartServer(t, r.env)
	waitFor(t, 15*time.Second, "the return in the log", func() bool {
		return out.line("level=INFO", "connection to the server back", "away=", "outbox=") != ""
	})
	var held int
	if _, err := fmt.Sscanf(field(out.line("connection to the server back"), "outbox="), "%d", &held); err != nil || held == 0 {
		t.Fatalf("the return does not say the events the outbox holds (%d, %v): %q", held, err, out.line("connection to the server back"))
	}
	waitFor(t, 15*time.Second, "the drain in the log", func() bool {
		return out.line("level=INFO", "outbox: drained after the reconnect", fmt.Sprintf("events=%d", held)) != ""
	})
	if line := out.line("connection to the server back"); strings.Contains(line, "away=0s") {
		t.Errorf("the return does not say how long the agent was away: %q", line)
	}
	for _, msg := range []string{"connection to the server lost", "connection to the server back", "outbox: drained after the reconnect"} {
		if n := strings.Count(out.String(), msg); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", msg, n, out.String())
		}
	}
	t.Log(out.line("connection to the server lost"))
	t.Log(out.line("connection to the server back"))
	t.Log(out.line("outbox: drained after the reconnect"))
}

// field is the value after key= in a text log line.
func field(line, key string) string {
	_, v, _ := strings.Cut(line, " "+key)
	v, _, _ = strings.Cut(v, " ")
	return v
}
