package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// rgWait polls cond every 50ms until it holds or 30s pass.
func rgWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRateGuardSuspendsAFloodingDeviceAndLetsItBackIn is issue 16's fifth
// finding, its rate half: on a `fleet server --auth`, a device that floods
// the log with its own valid credentials (5,000 events as fast as its
// connection takes them) has its credentials suspended a bounded number of
// events past its burst, while another device keeps publishing; /metrics,
// /healthz and the auth records show the suspension; when it ends the same
// credentials work again, and the device's honest agent, which kept what it
// recorded meanwhile, sends it: every event it recorded is on the log.
func TestRateGuardSuspendsAFloodingDeviceAndLetsItBackIn(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := t.TempDir()
	const burst = 300
	cmd := &ServerCmd{Data: data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1,
		HeartbeatTTL: 10 * time.Second, Auth: true,
		RateGuardFlags: RateGuardFlags{DeviceRate: "20/s", DeviceBurst: burst, DeviceSuspend: 8 * time.Second, DeviceSuspendMax: 30 * time.Second}}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer rs.Stop()
	url := rs.Env.NATSURL
	a, err := auth.Open(filepath.Join(data, "auth"))
	is.NoErr(err)
	creds := map[string]string{}
	for _, d := range []string{"pi-flood", "pi-ok"} {
		b, _, err := a.AddDevice(d)
		is.NoErr(err)
		creds[d] = filepath.Join(t.TempDir(), d+".creds")
		is.NoErr(os.WriteFile(creds[d], b, 0o600))
	}
	deviceStore := func(device string, extra ...nats.Option) (*nats.Conn, *jsstore.Store) {
		copts, err := auth.ClientOptions(creds[device])
		is.NoErr(err)
		nc, err := nats.Connect(url, append(copts, extra...)...)
		is.NoErr(err)
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		st, err := jsstore.Attach(ctx, js)
		is.NoErr(err)
		return nc, st
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	status := func(device string, i int) events.Event {
		e, err := events.New(device, "motd", 1, "agent:"+device, &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"})
		is.NoErr(err)
		clock.Stamp(&e)
		return e
	}

	// pi-flood's honest agent, converged on a manifest first
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
	is.NoErr(err)
	_, err = events.Apply(ctx, rs.Env.Store, clock, "pi-flood", m, "user:ops", nil)
	is.NoErr(err)
	root := t.TempDir()
	acmd := agentcli.Cmd{Device: "pi-flood", Root: root, State: t.TempDir(), DriftInterval: 100 * time.Millisecond, Concurrency: 2}
	aopts, err := acmd.Options()
	is.NoErr(err)
	copts, err := auth.ClientOptions(creds["pi-flood"])
	is.NoErr(err)
	anc, err := nats.Connect(url, append(agentcli.ConnectOptions(), append(copts, nats.ReconnectWait(200*time.Millisecond))...)...)
	is.NoErr(err)
	defer anc.Close()
	var mu sync.Mutex
	recorded := map[string]bool{}
	var agentLog strings.Builder
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &agentLog, mu: &mu}, nil))
	h, err := agent.Start(ctx, anc, "pi-flood", append(aopts, agent.WithLog(jsstore.NewLazy(anc)), agent.WithLogger(logger), agent.WithManifestPoll(100*time.Millisecond),
		agent.WithOnEvent(func(evs []events.Event) {
			mu.Lock()
			for _, e := range evs {
				recorded[e.ID] = true
			}
			mu.Unlock()
		}))...)
	is.NoErr(err)
	defer func() { _ = h.Stop() }()
	motd := filepath.Join(root, "etc/motd")
	rgWait(t, "the agent converged", func() bool { b, _ := os.ReadFile(motd); return string(b) == "hi\n" && h.Agent.OutboxLen() == 0 })

	// the flood, on a connection of its own with pi-flood's credentials
	_, flood := deviceStore("pi-flood")
	accepted := 0
	for i := range 5000 {
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, _, err := flood.Append(actx, status("pi-flood", i))
		acancel()
		if err != nil {
			break
		}
		accepted++
	}
	t.Logf("flood: %d of 5000 events stored before the suspension (burst %d)", accepted, burst)
	is.True(accepted < 5000)        // refused before the end
	is.True(accepted >= burst)      // not before its burst
	is.True(accepted <= burst+2000) // bounded past it
	d, err := a.LookupDevice("pi-flood")
	is.NoErr(err)
	is.True(d.Suspended(time.Now()))
	is.Equal(d.Suspensions, 1)

	// another device is not touched
	_, ok := deviceStore("pi-ok")
	for i := range 50 {
		_, _, err := ok.Append(ctx, status("pi-ok", i))
		is.NoErr(err)
	}

	// the agent, cut off, records drift meanwhile and keeps it
	is.NoErr(os.WriteFile(motd, []byte("tampered\n"), 0o644))
	rgWait(t, "the agent recorded the drift while suspended", func() bool { return h.Agent.OutboxLen() > 0 })
	// (never assert while holding mu: a failed assert would keep it, and the
	// agent's logger, blocked on it, would hang the agent's Stop)
	defer func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("agent log:\n%s", agentLog.String())
			mu.Unlock()
		}
	}()
	rgWait(t, "the agent to say it backs off", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(agentLog.String(), "the server refused this device's credentials: suspended by the rate guard or revoked by an operator; see 'fleet device list' on the server: backing off")
	})

	// what the server says
	t.Run("metrics and healthz show it", func(t *testing.T) {
		is := is.New(t)
		resp, err := http.Get("http://" + rs.Env.HTTPAddr + "/metrics")
		is.NoErr(err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		is.True(strings.Contains(string(b), "fleet_device_suspensions_total 1"))
		resp, err = http.Get("http://" + rs.Env.HTTPAddr + "/healthz")
		is.NoErr(err)
		var hz struct {
			Checks []struct {
				Name   string `json:"name"`
				OK     bool   `json:"ok"`
				Detail struct {
					Suspended map[string]time.Time `json:"suspended"`
				} `json:"detail"`
			} `json:"checks"`
		}
		is.NoErr(json.NewDecoder(resp.Body).Decode(&hz))
		resp.Body.Close()
		found := false
		for _, c := range hz.Checks {
			if c.Name == "device rate" {
				found = true
				is.True(c.OK)
				_, sus := c.Detail.Suspended["pi-flood"]
				is.True(sus)
			}
		}
		is.True(found)
	})

	// the suspension ends: the same credentials work, the agent drains
	rgWait(t, "the suspension lifted", func() bool { d, _ := a.LookupDevice("pi-flood"); return d.SuspendedUntil == nil })
	rgWait(t, "the agent drained its outbox", func() bool { b, _ := os.ReadFile(motd); return h.Agent.OutboxLen() == 0 && string(b) == "hi\n" })
	onLog := map[string]bool{}
	for s, err := range rs.Env.Store.Read(ctx, events.Filter{Device: "pi-flood"}) {
		is.NoErr(err)
		onLog[s.ID] = true
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range recorded {
		if !onLog[id] {
			t.Errorf("event %s the agent recorded is not on the log", id)
		}
	}
	t.Logf("agent: %d events recorded, all on the log", len(recorded))
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
