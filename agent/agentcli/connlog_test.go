package agentcli

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/eventstest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestConnectionEventsLoggedAtInfo: the agent's connection logs, at info, a
// disconnect with its error and a reconnect with the server, when the real
// server stops and comes back on the same address.
func TestConnectionEventsLoggedAtInfo(t *testing.T) {
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{Dir: dir, Listen: "127.0.0.1:0", RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(srv.URL(), "nats://")
	var buf syncBuf
	c := &Cmd{Device: "pi-01", log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	nc, err := nats.Connect(srv.URL(), append(ConnectOptions(), c.ConnectionLogging()...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	srv.Stop()
	eventstest.WaitFor(t, 10*time.Second, "the disconnect logged", func() bool { return strings.Contains(buf.String(), "disconnected from NATS") })
	srv2, err := embedded.Start(embedded.Options{Dir: dir, Listen: addr, RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Stop()
	eventstest.WaitFor(t, 10*time.Second, "the reconnect logged", func() bool { return strings.Contains(buf.String(), "reconnected to NATS") })
	out := buf.String()
	for _, want := range []string{"level=INFO", "device=pi-01", "server=nats://" + addr} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}
