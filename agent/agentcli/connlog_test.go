package agentcli

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestRefusedCredentialsWarnedOncePerChange: the connection's refused
// credentials, reported at every reconnect attempt, are warned once, with a
// text true for a rate-guard suspension and a revocation alike, and again
// only after the device was let in and refused anew. (The connection lost
// and back is the agent's to log: TestAgentLogsConnectionLostAndBackAtInfo.)
func TestRefusedCredentialsWarnedOncePerChange(t *testing.T) {
	var buf syncBuf
	c := &Cmd{Device: "pi-01", log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	var o nats.Options
	for _, opt := range c.ConnectionLogging() {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	const warning = "the server refused this device's credentials: suspended by the rate guard or revoked by an operator"
	for range 5 { // five reconnect attempts refused
		o.AsyncErrorCB(nil, nil, nats.ErrAuthorization)
	}
	if n := strings.Count(buf.String(), warning); n != 1 {
		t.Fatalf("warned %d times over 5 refused attempts, want once:\n%s", n, buf.String())
	}
	o.ReconnectedCB(nil) // let in again
	o.AsyncErrorCB(nil, nil, nats.ErrAuthRevoked)
	o.AsyncErrorCB(nil, nil, nats.ErrAuthRevoked)
	if n := strings.Count(buf.String(), warning); n != 2 {
		t.Fatalf("warned %d times after a second refusal, want twice:\n%s", n, buf.String())
	}
	for _, want := range []string{"level=WARN", "device=pi-01", "fleet device list"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the warning lacks %q:\n%s", want, buf.String())
		}
	}
}
