package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
)

// TestSiteKeepsWorkingThroughAnUplinkCut: a hub (a nats-server process with
// a JetStream domain and a leafnodes listener), `fleet site` as its leaf
// node behind a TCP proxy, and agents at the site. A generation applied at
// the hub reaches the site's agents through the site's FLEET; then the
// uplink is cut while the agents converge a generation applied just before
// and correct tampering, and a manifest is applied at the hub during the
// cut. On reconnect the hub's FLEET has every event of the outage once, in
// each device's order, and the manifest applied during the cut reaches the
// agents. FLEET_SOAK=1 cuts for 60 s (default 4 s).
func TestSiteKeepsWorkingThroughAnUplinkCut(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end site run")
	}
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	outage := 4 * time.Second
	if soak() {
		outage = 60 * time.Second
	}
	devices := []string{"pi-01", "pi-02", "pi-03"}

	hubC := eventstest.StartCluster(t, 1, eventstest.ClusterOptions{Domain: "hub", Leafnodes: true})
	hubNC := hubC.Connect()
	hubJS, _ := jetstream.New(hubNC)
	hub, err := jsstore.Open(ctx, hubJS, jsstore.Config{})
	is.NoErr(err)
	proxy := eventstest.StartProxy(t, strings.TrimPrefix(hubC.Nodes[0].LeafURL(), "nats-leaf://"))

	site, err := (&SiteCmd{Hub: "nats-leaf://" + proxy.Addr(), Domain: "shop-1", HubDomain: "hub", Data: t.TempDir(),
		Listen: "127.0.0.1:0", Devices: devices, HeartbeatTTL: 30 * time.Second}).Start(ctx, nil)
	is.NoErr(err)
	defer site.Stop()
	select {
	case <-site.HubSourced:
	case <-time.After(30 * time.Second):
		t.Fatal("the hub's FLEET does not source the site after 30s")
	}

	clock, _ := events.NewClock(events.ClockState{}, nil)
	gens := map[string]int64{}
	apply := func(dev, content string) {
		t.Helper()
		m := events.Manifest{}
		for _, f := range []string{"motd", "app"} {
			m.Resources = append(m.Resources, events.Resource{ID: f, Kind: events.KindFile,
				File: &events.FileSpec{Path: "/etc/" + f, Content: content + " " + f + "\n"}})
		}
		res, err := events.Apply(ctx, hub, clock, dev, m, "user:ops", nil)
		is.NoErr(err)
		gens[dev] = res.Generation
	}
	got := &committed{ids: map[string]string{}}
	roots := map[string]string{}
	agents := map[string]*agent.Handle{}
	for _, dev := range devices {
		apply(dev, "g1")
		roots[dev] = t.TempDir()
		nc, err := nats.Connect(site.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		is.NoErr(err)
		defer nc.Close()
		h, err := agent.Start(ctx, nc, dev, agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(roots[dev]), agent.WithStateDir(t.TempDir()),
			agent.WithLogger(quietLog), agent.WithOnEvent(got.add), agent.WithManifestPoll(200*time.Millisecond),
			agent.WithDriftInterval(200*time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second),
			agent.WithHeartbeatInterval(time.Second))
		is.NoErr(err)
		agents[dev] = h
		defer func() { _ = h.Stop() }()
	}
	readyAt := func(dev string, gen int64) bool {
		h := agents[dev]
		st := h.Agent.Status()
		if h.Agent.Generation() != gen || len(st) != 2 || h.Agent.OutboxLen() != 0 {
			return false
		}
		for _, s := range st {
			if s.State != fsm.Ready || s.Generation != gen {
				return false
			}
		}
		return true
	}
	content := func(dev, f string) string {
		b, _ := os.ReadFile(filepath.Join(roots[dev], "etc", f))
		return string(b)
	}
	allReady := func() bool {
		for _, dev := range devices {
			if !readyAt(dev, gens[dev]) {
				return false
			}
		}
		return true
	}
	eventstest.WaitFor(t, 30*time.Second, "the site's agents Ready at generation 1 (manifests sourced from the hub)", allReady)

	// a generation applied before the cut reaches the site, then the cut
	for _, dev := range devices {
		apply(dev, "g2")
	}
	eventstest.WaitFor(t, 30*time.Second, "generation 2 in the site's FLEET", func() bool {
		for _, dev := range devices {
			last, err := site.Store.LastManifest(ctx, dev)
			if err != nil || last.Generation != gens[dev] {
				return false
			}
		}
		return true
	})
	siteAtCut, err := site.Store.LastSeq(ctx)
	is.NoErr(err)
	proxy.Cut()
	cutAt := time.Now()
	time.Sleep(time.Second) // what crossed before the cut is stored at the hub
	hubBefore, err := hub.LastSeq(ctx)
	is.NoErr(err)
	eventstest.WaitFor(t, 30*time.Second, "the site's agents Ready at generation 2 with the uplink cut", allReady)
	apply("pi-02", "g3-during-the-cut") // at the hub, while the site cannot see it
	for time.Since(cutAt) < outage {
		for _, dev := range devices {
			_ = os.WriteFile(filepath.Join(roots[dev], "etc", "motd"), []byte("tampered\n"), 0o644)
		}
		eventstest.WaitFor(t, 30*time.Second, "tampering corrected at the site with the uplink cut", func() bool {
			for _, dev := range devices {
				if content(dev, "motd") != "g2 motd\n" || !strings.HasPrefix(content("pi-02", "app"), "g2") {
					return false
				}
			}
			return true
		})
		time.Sleep(500 * time.Millisecond)
	}
	hubDuring, err := hub.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(hubDuring, hubBefore+1) // only the manifest applied at the hub: the site's events wait at the site
	siteSeq, err := site.Store.LastSeq(ctx)
	is.NoErr(err)

	// the uplink comes back
	got.mu.Lock()
	outageEvents := len(got.ids)
	got.mu.Unlock()
	proxy.Restore()
	restoredAt := time.Now()
	backlog := siteSeq - siteAtCut // what the site stored during the cut: the hub takes each once
	firstEvent, allBacklog := make(chan time.Duration, 1), make(chan time.Duration, 1)
	go func() { // the outage's first and last events at the hub
		first := false
		for ctx.Err() == nil {
			seq, err := hub.LastSeq(ctx)
			if err == nil && seq > hubDuring && !first {
				firstEvent <- time.Since(restoredAt)
				first = true
			}
			if err == nil && seq >= hubDuring+backlog {
				allBacklog <- time.Since(restoredAt)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	eventstest.WaitFor(t, 60*time.Second, "the manifest applied during the cut Ready at pi-02", func() bool {
		return readyAt("pi-02", gens["pi-02"]) && content("pi-02", "motd") == "g3-during-the-cut motd\n"
	})
	eventstest.WaitFor(t, 60*time.Second, "every event the site's agents committed on the hub", func() bool {
		got.mu.Lock()
		ids := make(map[string]bool, len(got.ids))
		for id := range got.ids {
			ids[id] = true
		}
		got.mu.Unlock()
		for s, err := range hub.Read(ctx, events.Filter{}) {
			if err == nil {
				delete(ids, s.ID)
			}
		}
		return len(ids) == 0 && allReady()
	})
	caughtUp := time.Since(restoredAt)
	hubAfter, err := hub.LastSeq(ctx)
	is.NoErr(err)
	taken := hubAfter - hubDuring
	first, all := <-firstEvent, <-allBacklog
	t.Logf("uplink cut %s; the site stored %d messages during it (%d in all), the agents committed %d events by the reconnect; "+
		"first event of the outage at the hub %s after it, the whole backlog %s after it (%.0f msg/s once flowing), every event and the manifest of the cut Ready %s after it (%d messages at the hub since); source restarts %d",
		outage, backlog, siteSeq, outageEvents, first.Round(time.Millisecond), all.Round(time.Millisecond),
		float64(backlog)/max(all-first, time.Millisecond).Seconds(), caughtUp.Round(time.Millisecond), taken, site.SourceRestarts.Load())
	checkLogOnce(t, ctx, hub, got)
}

// TestSiteRefusesBadFlags: each bad flag is a usage error (exit 2) that
// names the flag and the rule, and nothing is created.
func TestSiteRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  SiteCmd
		want string
	}{
		{"domain not a token", SiteCmd{Hub: "nats-leaf://127.0.0.1:7422", Domain: "a.b", HubDomain: "hub"}, "--domain"},
		{"domain is the hub's", SiteCmd{Hub: "nats-leaf://127.0.0.1:7422", Domain: "hub", HubDomain: "hub"}, "must differ"},
		{"device not a token", SiteCmd{Hub: "nats-leaf://127.0.0.1:7422", Domain: "s", HubDomain: "hub", Devices: []string{"pi 1"}}, "--devices"},
		{"no hub", SiteCmd{Hub: " , ", Domain: "s", HubDomain: "hub"}, "--hub"},
		{"bad listen", SiteCmd{Hub: "nats-leaf://127.0.0.1:7422", Domain: "s", HubDomain: "hub", Listen: "4222"}, "--listen"},
		{"auth dir without keys", SiteCmd{Hub: "nats-leaf://127.0.0.1:7422", Domain: "s", HubDomain: "hub", Auth: "/nonexistent/auth"}, "--auth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := is.New(t)
			dir := filepath.Join(t.TempDir(), "site")
			tc.cmd.Data = dir
			if tc.cmd.Listen == "" {
				tc.cmd.Listen = "127.0.0.1:0"
			}
			_, err := tc.cmd.Start(context.Background(), nil)
			is.True(err != nil)
			is.Equal(exitCode(err), 2)
			is.True(strings.Contains(err.Error(), tc.want))
			_, serr := os.Stat(dir)
			is.True(os.IsNotExist(serr)) // nothing created
		})
	}
}
