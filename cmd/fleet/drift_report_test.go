package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
)

// TestReportedDriftShowsInGetDeviceAndExplain: a driftPolicy: report
// resource changed on the device is left as found by the agent; `fleet get
// device` must not say Ready with nothing to explain: Ready is False with
// DriftReported, the resource carries the drift, and `fleet explain` says
// it is not as desired.
func TestReportedDriftShowsInGetDeviceAndExplain(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	p, err := startProjections(ctx, env.Conn, env.JS, t.TempDir(), projections.DefaultDurable, time.Minute, nil)
	is.NoErr(err)
	t.Cleanup(p.Stop)
	t.Setenv("FLEET_ACTOR", "ops")
	url := "--nats=" + env.Server.URL()
	root := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.Start(ctx, env.Conn, "pi-01", agent.WithLog(jsstore.NewLazy(env.Conn)), agent.WithRoot(root), agent.WithStateDir(t.TempDir()), agent.WithLogger(quiet),
		agent.WithManifestPoll(100*time.Millisecond), agent.WithDriftInterval(100*time.Millisecond))
	is.NoErr(err)
	t.Cleanup(func() { _ = h.Stop() })
	_, code := replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", "pi-01", url)
	is.Equal(code, 0)
	device := func() projections.Device {
		var d projections.Device
		out, code := replayCLI(t, "get", "device", "pi-01", "-o", "json", url)
		if code == 0 {
			_ = json.Unmarshal([]byte(out), &d)
		}
		return d
	}
	eventstest.WaitFor(t, 15*time.Second, "pi-01 Ready", func() bool {
		c, _ := device().Condition(projections.CondReady)
		return c.Status == projections.True
	})
	is.NoErr(os.WriteFile(filepath.Join(root, "etc", "hosts.d", "fleet"), []byte("changed by hand\n"), 0o644))
	var d projections.Device
	eventstest.WaitFor(t, 15*time.Second, "the reported drift in the read model", func() bool {
		d = device()
		c, _ := d.Condition(projections.CondReady)
		return c.Reason == "DriftReported"
	})
	ready, _ := d.Condition(projections.CondReady)
	is.Equal(ready.Status, projections.False)
	is.True(strings.Contains(ready.Message, "hosts-extra"))
	for _, r := range d.Resources {
		if r.ID == "hosts-extra" {
			is.Equal(r.State, "Ready") // the agent left it: its state machine is Ready
			is.True(strings.Contains(r.Drift, "content"))
		}
	}
	out, code := replayCLI(t, "get", "device", "pi-01", url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "DriftReported"))
	out, code = replayCLI(t, "explain", "pi-01", "hosts-extra", url)
	is.Equal(code, 0)
	t.Log("\n" + out)
	is.True(strings.Contains(out, "not as desired"))
	is.True(!strings.Contains(out, "nothing to explain"))
}
