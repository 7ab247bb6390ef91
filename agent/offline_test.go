package agent_test

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// restartServer brings a stopped env's server back on the same store and the
// same address, so that agents reconnect to it.
func restartServer(t *testing.T, old *eventstest.Env) *eventstest.Env {
	t.Helper()
	u, err := url.Parse(old.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := embedded.Start(embedded.Options{Dir: old.Dir, Listen: u.Host, RelaxedSync: true})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	st, err := jsstore.Open(context.Background(), js, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	env := &eventstest.Env{Server: s, Conn: nc, JS: js, Store: st, Dir: old.Dir}
	t.Cleanup(env.Stop)
	return env
}

func TestOfflineDriftIsCorrectedAndEventsArriveOnceInOrder(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01", agent.WithDriftInterval(100*time.Millisecond))
	gen := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	before := len(r.rec.all())

	r.env.Stop() // the server goes away
	is.NoErr(os.WriteFile(r.path("/etc/app/app.conf"), []byte("tampered offline\n"), 0o600))
	waitFor(t, 10*time.Second, "corrected offline", func() bool {
		return readFile(t, r.path("/etc/app/app.conf")) == "port=80 v1\n" && allReady(r.h.Agent, 3, gen)
	})
	offline := r.rec.all()[before:]
	is.True(len(offline) >= 4) // DriftDetected, Reconciling, ReconcileAttempted, Ready
	is.True(r.h.Agent.OutboxLen() >= len(offline))

	env2 := restartServer(t, r.env)
	waitFor(t, 20*time.Second, "outbox drained after restart", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, env2, "pi-01")
	checkLog(t, log)
	// The log holds exactly what the agent recorded, once each, in the order it recorded it.
	var agentLog []events.Stored
	for _, s := range log {
		if s.Type != events.TypeManifestApplied {
			agentLog = append(agentLog, s)
		}
	}
	recorded := r.rec.all()
	is.Equal(len(agentLog), len(recorded))
	for i := range recorded {
		is.Equal(agentLog[i].ID, recorded[i].ID)
	}
	drift := ofType(log, events.TypeDriftDetected, "app-conf")
	is.True(len(drift) >= 1)
	is.True(drift[0].StreamTime.After(drift[0].At)) // stored late, stamped when it happened
}

func TestClockNeverRunsBackwardsAcrossRestart(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	gen1 := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "gen 1 Ready", func() bool { return allReady(r.h.Agent, 3, gen1) })
	is.NoErr(r.h.Stop())
	// The device reboots without a real-time clock: its wall clock is a day behind.
	r.start(t, "pi-01", agent.WithClock(func() time.Time { return time.Now().Add(-24 * time.Hour) }))
	gen2 := apply(t, r.env, "pi-01", threeFiles("v2")...)
	waitFor(t, 10*time.Second, "gen 2 Ready", func() bool { return allReady(r.h.Agent, 3, gen2) })
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "pi-01")
	checkLog(t, log) // ids and times increase across the restart
	last := log[len(log)-1]
	is.True(last.At.After(time.Now().Add(-time.Hour))) // not stamped a day in the past
}
