package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestDashboardShowsLastEventAndHeartbeatApartAndStaleLive: the device page
// shows the last event and the last heartbeat as two times (the last event
// was shown as "last seen" beside a fresh heartbeat), and when the agent
// stops, the open page turns the device Stale without a reload.
func TestDashboardShowsLastEventAndHeartbeatApartAndStaleLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, an agent and Chromium")
	}
	ctx := newBrowser(t, 1280, 900)
	f := startBrowserFleet(t)
	nc, err := nats.Connect(f.rs.Env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	h, err := agent.Start(context.Background(), nc, "pi-01", agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(t.TempDir()), agent.WithStateDir(filepath.Join(t.TempDir(), "state")),
		agent.WithManifestPoll(time.Second), agent.WithHeartbeatInterval(time.Second), agent.WithShutdownGrace(time.Second),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = h.Stop()
		}
	})
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Apply(context.Background(), f.rs.Env.Store, f.clock, "pi-01", m, "user:test", nil); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.url+"#/devices/pi-01"),
		chromedp.WaitVisible(css(`#resources tr[data-resource="motd"][data-state="Ready"]`)),
		poll(`!!document.querySelector('#last-heartbeat [data-ago]') && !!document.querySelector('#last-event [data-ago]')`),
	); err != nil {
		t.Fatal(err)
	}
	beat := eval[string](t, ctx, `document.querySelector('#last-heartbeat [data-ago]').dataset.ago`)
	last := eval[string](t, ctx, `document.querySelector('#last-event [data-ago]').dataset.ago`)
	text := eval[string](t, ctx, `document.querySelector('.gen').textContent`)
	t.Logf("header: %q (event %s, heartbeat %s)", text, last, beat)
	if beat == last {
		t.Fatalf("the last event and the last heartbeat show the same time %s: they are apart", beat)
	}
	for _, v := range []string{beat, last} {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			t.Fatalf("not a time: %q", v)
		}
	}
	if eval[bool](t, ctx, `document.querySelector('[data-condition="Stale"][data-status="True"]') !== null`) {
		t.Fatal("Stale while the agent heartbeats")
	}

	// the agent stops: no event marks it; the page must turn Stale by itself (TTL 10 s)
	stopped = true
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, poll(`document.querySelector('[data-condition="Stale"][data-status="True"]') !== null`)); err != nil {
		t.Fatalf("the open device page never showed the device Stale: %v", err)
	}
}
