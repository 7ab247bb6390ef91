package agent_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestHeartbeatValueInKV: the agent puts its heartbeat under its device id
// in the heartbeat bucket: device, generation in force, agent version,
// resources by state and the outbox length, at a recent time.
func TestHeartbeatValueInKV(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	kv, err := env.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.HeartbeatBucket, History: 1, TTL: time.Minute})
	is.NoErr(err)
	r := &rig{env: env, root: t.TempDir(), state: t.TempDir(), rec: &recorder{}}
	r.nc = connect(t, env)
	r.start(t, "hb-01", agent.WithHeartbeatInterval(100*time.Millisecond))
	gen := apply(t, env, "hb-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "3 Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	var hb agent.Heartbeat
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	waitFor(t, 10*time.Second, "a heartbeat with 3 Ready and an empty outbox", func() bool {
		e, err := kv.Get(ctx, "hb-01")
		if err != nil {
			return false
		}
		hb = agent.Heartbeat{}
		is.NoErr(json.Unmarshal(e.Value(), &hb))
		return hb.Counts["Ready"] == 3 && hb.Generation == gen && hb.Outbox == 0
	})
	is.Equal(hb.Device, "hb-01")
	is.Equal(hb.AgentVersion, agent.Version)
	is.Equal(len(hb.Counts), 1)                 // nothing but Ready
	is.True(time.Since(hb.At) < 10*time.Second) // a fresh heartbeat
	is.True(!hb.At.After(time.Now()))

	// It keeps beating: a later value with a later time.
	first := hb.At
	waitFor(t, 10*time.Second, "a later heartbeat", func() bool {
		e, err := kv.Get(ctx, "hb-01")
		if err != nil {
			return false
		}
		var next agent.Heartbeat
		is.NoErr(json.Unmarshal(e.Value(), &next))
		return next.At.After(first)
	})
}
