package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestAgentWarnsWhenItsCredentialsAreSuspended: on a server with auth on,
// the device's credentials are revoked in the account (as the rate guard's
// suspension does); the agent, cut off, records a drift, keeps it, and says
// in its log at warn level that the server refuses its credentials and that
// it backs off keeping its events (issue 17).
func TestAgentWarnsWhenItsCredentialsAreSuspended(t *testing.T) {
	ctx := context.Background()
	authority, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := embedded.WithAuth(authority)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir(), RelaxedSync: true, Configure: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	op, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(authority.OperatorCredsPath()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	js, _ := jetstream.New(op)
	admin, err := jsstore.Open(ctx, js, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.EnsureHeartbeatBucket(ctx, js, auth.HeartbeatBucketConfig{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	creds, _, err := authority.AddDevice("pi-sus")
	if err != nil {
		t.Fatal(err)
	}
	credsPath := filepath.Join(t.TempDir(), "pi-sus.creds")
	if err := os.WriteFile(credsPath, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	copts, err := auth.ClientOptions(credsPath)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), append(copts, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)

	logger, out := infoLogger()
	root := t.TempDir()
	h, err := agent.Start(ctx, nc, "pi-sus", agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(root), agent.WithStateDir(t.TempDir()),
		agent.WithLogger(logger), agent.WithManifestPoll(100*time.Millisecond), agent.WithDriftInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Stop() })
	clock, _ := events.NewClock(events.ClockState{}, nil)
	if _, err := events.Apply(ctx, admin, clock, "pi-sus", events.Manifest{Resources: []events.Resource{fileRes("motd", "/etc/motd", "hi\n")}}, "user:test", nil); err != nil {
		t.Fatal(err)
	}
	motd := filepath.Join(root, "etc/motd")
	waitFor(t, 10*time.Second, "converged and drained", func() bool {
		b, _ := os.ReadFile(motd)
		return string(b) == "hi\n" && h.Agent.OutboxLen() == 0
	})

	tok, _, err := authority.SuspendDevice("pi-sus", time.Now().Add(time.Hour), "test")
	if err != nil {
		t.Fatal(err)
	}
	sys, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(authority.SystemCredsPath()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Close)
	if err := auth.Push(ctx, sys, tok); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(motd, []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the drift recorded and kept", func() bool { return h.Agent.OutboxLen() > 0 })
	waitFor(t, 15*time.Second, "the warning in the agent's log", func() bool {
		return out.line("level=WARN", "the server refused this device's credentials: suspended by the rate guard or revoked by an operator; see 'fleet device list' on the server", "backing off, keeping events locally") != ""
	})
	if line := out.line("level=WARN", "the server refused this device's credentials"); !strings.Contains(line, "events=") {
		t.Errorf("the warning does not say how many events wait: %q", line)
	}
}
