package agent_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
)

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func tenFiles(v string) []events.Resource {
	rs := make([]events.Resource, 10)
	for i := range rs {
		rs[i] = fileRes(fmt.Sprintf("f%02d", i), fmt.Sprintf("/etc/f%02d", i), "file "+v+"\n")
	}
	return rs
}

// lastWAL returns the newest write-ahead log file of the agent's store.
func lastWAL(t *testing.T, state string) string {
	t.Helper()
	wals, err := filepath.Glob(filepath.Join(state, "store", "*.log"))
	if err != nil || len(wals) == 0 {
		t.Fatalf("no WAL in %s: %v", state, err)
	}
	slices.Sort(wals)
	return wals[len(wals)-1]
}

// TestDamagedStoreIsReportedAndTheAgentGoesOn: an agent converges online,
// then, offline, corrects drift of ten files and queues the events; its
// store's write-ahead log is then truncated to half (or has bytes flipped
// in its middle). Restarted, the agent logs at error level that its store
// lost events it had synced, with how many and what to do, goes on as a new
// writer, converges every file and its events reach the log and fold.
func TestDamagedStoreIsReportedAndTheAgentGoesOn(t *testing.T) {
	for _, damage := range []string{"truncate", "flip", "flip-early", "manifest"} {
		t.Run(damage, func(t *testing.T) {
			is := is.New(t)
			dev := "damaged-" + damage
			r := newRig(t, dev, agent.WithDriftInterval(50*time.Millisecond))
			gen := apply(t, r.env, dev, tenFiles("v1")...)
			waitFor(t, 10*time.Second, "10 Ready", func() bool { return allReady(r.h.Agent, 10, gen) })
			waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
			is.NoErr(r.h.Stop())

			// offline: nothing listens there
			offline, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
				nats.ReconnectWait(time.Hour))
			is.NoErr(err)
			t.Cleanup(offline.Close)
			rnc := r.nc
			r.nc = offline
			r.start(t, dev, agent.WithDriftInterval(50*time.Millisecond))
			for i := range 10 {
				is.NoErr(os.WriteFile(r.path(fmt.Sprintf("/etc/f%02d", i)), []byte("tampered\n"), 0o644))
			}
			waitFor(t, 10*time.Second, "40 events queued offline", func() bool { return r.h.Agent.OutboxLen() >= 40 })
			waitFor(t, 10*time.Second, "drift corrected offline", func() bool { return allReady(r.h.Agent, 10, gen) })
			queued := r.h.Agent.OutboxLen()
			is.NoErr(r.h.Stop())

			wal := lastWAL(t, r.state)
			b, err := os.ReadFile(wal)
			is.NoErr(err)
			switch damage {
			case "truncate":
				is.NoErr(os.Truncate(wal, int64(len(b)/2)))
			case "flip":
				for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
					b[i] ^= 0xff
				}
				is.NoErr(os.WriteFile(wal, b, 0o644))
			case "manifest": // the store's MANIFEST damaged: Pebble refuses to open it
				ms, _ := filepath.Glob(filepath.Join(r.state, "store", "MANIFEST-*"))
				is.True(len(ms) > 0)
				mb, err := os.ReadFile(ms[len(ms)-1])
				is.NoErr(err)
				for i := 16; i < 48 && i < len(mb); i++ {
					mb[i] ^= 0xff
				}
				is.NoErr(os.WriteFile(ms[len(ms)-1], mb, 0o644))
			case "flip-early":
				for i := 64; i < 128; i++ {
					b[i] ^= 0xff
				}
				is.NoErr(os.WriteFile(wal, b, 0o644))
			}

			var logs lockedBuffer
			r.nc = rnc
			r.start(t, dev, agent.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			waitFor(t, 10*time.Second, "the damage reported", func() bool {
				return regexp.MustCompile(`level=ERROR msg="agent store damaged`).MatchString(logs.String())
			})
			m := regexp.MustCompile(` lostForGood=(\d+)`).FindStringSubmatch(logs.String())
			if damage == "truncate" || m != nil { // a store Pebble refuses is replaced: the count is the whole outbox
				is.True(m != nil)
				n, _ := strconv.Atoi(m[1])
				is.True(n > 0 && n <= queued)
				t.Logf("%d of %d queued events lost; log:\n%s", n, queued, logs.String())
			}
			waitFor(t, 15*time.Second, "10 Ready again", func() bool { return allReady(r.h.Agent, 10, gen) })
			waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
			for i := range 10 {
				got, err := os.ReadFile(r.path(fmt.Sprintf("/etc/f%02d", i)))
				is.NoErr(err)
				is.Equal(string(got), "file v1\n")
			}
			d := fold(deviceLog(t, r.env, dev), dev)
			is.True(allReadyAt(d, 10, gen))
			is.True(!slices.ContainsFunc(deviceLog(t, r.env, dev), func(s events.Stored) bool { return s.Actor == "agent:"+dev && s.Writer == "" }))
		})
	}
}
