package agent_test

import (
	"bytes"
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
