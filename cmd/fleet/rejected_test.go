package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
)

// TestRejectedManifestShowsInGetDeviceAndExplain: an agent started with
// --trust refuses an unsigned manifest (ManifestRejected). `fleet get
// device` must say Rejected with the reason (not Reconciling), and `fleet
// explain` that the agent refused it (not that it has not reported).
func TestRejectedManifestShowsInGetDeviceAndExplain(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	p, err := startProjections(ctx, env.Conn, env.JS, t.TempDir(), projections.DefaultDurable, time.Minute, nil)
	is.NoErr(err)
	t.Cleanup(p.Stop)
	t.Setenv("FLEET_ACTOR", "ops")
	url := "--nats=" + env.Server.URL()

	signer, err := events.GenerateSigner()
	is.NoErr(err)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.Start(ctx, env.Conn, "pi-01", agent.WithLog(jsstore.NewLazy(env.Conn)), agent.WithRoot(t.TempDir()), agent.WithStateDir(t.TempDir()), agent.WithLogger(quiet),
		agent.WithManifestPoll(100*time.Millisecond), agent.WithManifestCheck(events.TrustCheck([]events.PublicKey{signer.Public()})))
	is.NoErr(err)
	t.Cleanup(func() { _ = h.Stop() })
	_, code := replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", "pi-01", url)
	is.Equal(code, 0)

	var d projections.Device
	eventstest.WaitFor(t, 15*time.Second, "the rejection in the read model", func() bool {
		out, code := replayCLI(t, "get", "device", "pi-01", "-o", "json", url)
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			return false
		}
		c, _ := d.Condition(projections.CondDegraded)
		return c.Reason == "ManifestRejected"
	})
	ready, _ := d.Condition(projections.CondReady)
	prog, _ := d.Condition(projections.CondProgressing)
	is.Equal(ready.Reason, "ManifestRejected")
	is.True(strings.Contains(ready.Message, "the agent rejected generation 1"))
	is.True(strings.Contains(ready.Message, "unsigned") || strings.Contains(ready.Message, "sign"))
	is.Equal(prog.Status, projections.False) // not Reconciling

	out, code := replayCLI(t, "get", "device", "pi-01", url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "ManifestRejected"))
	is.True(!strings.Contains(out, "Reconciling"))

	out, code = replayCLI(t, "explain", "pi-01", "motd", url)
	is.Equal(code, 0)
	t.Log("\n" + out)
	is.True(strings.Contains(out, "was rejected by the agent"))
	is.True(strings.Contains(out, "the agent will not apply it"))
	is.True(!strings.Contains(out, "has not reported on it yet"))
}
