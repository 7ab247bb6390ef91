package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestManifestPublishedWhileDisconnectedIsReadOnReconnect: a manifest
// appended while the agent's connection is down sends it no hint; the
// agent reads its manifest subject again when it reconnects, so it takes
// the new generation at once, not at the next (rare) safety-net poll.
func TestManifestPublishedWhileDisconnectedIsReadOnReconnect(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	// Reconnect only after the new manifest is in: no hint can reach it.
	nc, err := nats.Connect(env.Server.URL(), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(2*time.Second), nats.ReconnectJitter(0, 0), nats.ReconnectBufSize(-1))
	is.NoErr(err)
	t.Cleanup(nc.Close)
	h, err := agent.Start(context.Background(), nc, "pi-01", agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(t.TempDir()), agent.WithStateDir(t.TempDir()),
		agent.WithLogger(quiet), agent.WithManifestPoll(time.Hour))
	is.NoErr(err)
	t.Cleanup(func() { _ = h.Stop() })
	gen := apply(t, env, "pi-01", fileRes("motd", "/etc/motd", "v1\n"))
	waitFor(t, 10*time.Second, "generation 1", func() bool { return allReady(h.Agent, 1, gen) })

	env.Stop()
	env2 := restartServer(t, env)
	gen2 := apply(t, env2, "pi-01", fileRes("motd", "/etc/motd", "v2\n"))
	is.True(nc.IsConnected() == false) // the manifest went in before the agent came back
	waitFor(t, 15*time.Second, "generation 2 after the reconnect", func() bool { return allReady(h.Agent, 1, gen2) })
}
