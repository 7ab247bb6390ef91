package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
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

// TestClockAheadThenRightInspectAndReplayIncludeRecentEvents: a device's
// agent wrote its events with a clock ahead (30 minutes, and 5 years with
// its state then wiped as a re-flash would), as an agent without skew
// detection did; started again with the right clock, `fleet inspect DEVICE
// --at now` shows its new generation settled and lastSeen not in the
// future, and `fleet replay --until now` lists its recent events.
func TestClockAheadThenRightInspectAndReplayIncludeRecentEvents(t *testing.T) {
	for _, c := range []struct {
		name  string
		ahead time.Duration
		wipe  bool
	}{
		{"30 minutes ahead", 30 * time.Minute, false},
		{"5 years ahead, re-flashed", 5 * 365 * 24 * time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			env := eventstest.Start(t, true)
			url := "--nats=" + env.Server.URL()
			const dev = "skewed-01"
			root, state := t.TempDir(), t.TempDir()
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			start := func(opts ...agent.Option) *agent.Handle {
				h, err := agent.Start(context.Background(), env.Conn, dev, append([]agent.Option{agent.WithLog(jsstore.NewLazy(env.Conn)), agent.WithRoot(root),
					agent.WithStateDir(state), agent.WithLogger(quiet), agent.WithManifestPoll(100 * time.Millisecond)}, opts...)...)
				is.NoErr(err)
				t.Cleanup(func() { _ = h.Stop() })
				return h
			}
			applyGen := func(content string) int64 {
				m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"" + content + "\"}\n"))
				is.NoErr(err)
				clock, _ := events.NewClock(events.ClockState{}, nil)
				res, err := events.Apply(context.Background(), env.Store, clock, dev, m, "user:ops", nil)
				is.NoErr(err)
				return res.Generation
			}
			settled := func(h *agent.Handle, gen int64) bool {
				st := h.Agent.Status()
				return h.Agent.Generation() == gen && len(st) == 1 && st["motd"].State == "Ready" && h.Agent.OutboxLen() == 0
			}

			h := start(agent.WithClock(func() time.Time { return time.Now().Add(c.ahead) }), agent.WithMaxClockSkew(1<<62))
			gen1 := applyGen("v1")
			eventstest.WaitFor(t, 10*time.Second, "generation 1 settled", func() bool { return settled(h, gen1) })
			is.NoErr(h.Stop())
			if c.wipe {
				is.NoErr(os.RemoveAll(state))
			}
			h = start()
			gen2 := applyGen("v2")
			eventstest.WaitFor(t, 10*time.Second, "generation 2 settled", func() bool { return settled(h, gen2) })
			now := time.Now().UTC()

			out, code := replayCLI(t, "inspect", dev, "--at", now.Format(time.RFC3339Nano), "-o", "json", url)
			is.Equal(code, 0)
			var d projections.Device
			is.NoErr(json.Unmarshal([]byte(out), &d))
			is.Equal(d.Generation, gen2)
			is.Equal(d.ObservedGeneration, gen2) // its new events are in the state at now
			is.Equal(d.Resources[0].State, "Ready")
			is.True(d.LastSeen != nil && !d.LastSeen.After(now.Add(time.Second))) // not in the future

			out, code = replayCLI(t, "replay", "--device", dev, "--until", now.Format(time.RFC3339Nano), "-o", "ndjson", url)
			is.Equal(code, 0)
			recent := 0
			sc := bufio.NewScanner(strings.NewReader(out))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var s events.Stored
				is.NoErr(json.Unmarshal(sc.Bytes(), &s))
				if s.Actor == "agent:"+dev && s.Generation == gen2 && s.Type == events.TypeStatusChanged {
					recent++
				}
			}
			is.True(recent >= 3) // Pending, Reconciling, Ready of generation 2
		})
	}
}
