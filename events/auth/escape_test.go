package auth_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestDeviceCannotEscapeWithItsOwnCredentials is issue 16's first finding:
// with its own valid credentials a device must not make the server publish
// anywhere (a push consumer's deliver_subject), create any consumer, or
// purge other devices' data with special headers.
func TestDeviceCannotEscapeWithItsOwnCredentials(t *testing.T) {
	env := startAuth(t, t.TempDir(), t.TempDir())
	ctx := context.Background()
	for _, d := range []string{"pi-a", "pi-b"} {
		if _, err := env.apply(d, env.admin); err != nil {
			t.Fatal(err)
		}
	}
	a, err := env.connect(env.credsFor("pi-a"))
	if err != nil {
		t.Fatal(err)
	}
	_ = env.credsFor("pi-b")

	t.Run("no push consumer delivering to another subject, and no consumer at all", func(t *testing.T) {
		is := is.New(t)
		// the operator listens where the attacker wants its manifest delivered
		opNC, err := nats.Connect(env.srv.ClientURL(), nats.UserCredentials(env.auth.OperatorCredsPath()))
		is.NoErr(err)
		defer opNC.Close()
		rebuilds, err := opNC.SubscribeSync("fleetapi.projections.rebuild")
		is.NoErr(err)
		is.NoErr(opNC.Flush())

		push, _ := json.Marshal(map[string]any{"stream_name": events.Stream, "config": map[string]any{
			"name": "agent-pi-a", "durable_name": "agent-pi-a", "filter_subject": events.ManifestSubject("pi-a"),
			"deliver_subject": "fleetapi.projections.rebuild", "deliver_policy": "all", "ack_policy": "none",
		}})
		for _, subj := range []string{
			"$JS.API.CONSUMER.CREATE.FLEET.agent-pi-a.fleet.pi-a.manifest", // the name and filter the old permissions allowed
			"$JS.API.CONSUMER.CREATE.FLEET.agent-pi-a",
			"$JS.API.CONSUMER.CREATE.FLEET",
			"$JS.API.CONSUMER.DURABLE.CREATE.FLEET.agent-pi-a",
		} {
			_, err := a.nc.Request(subj, push, 700*time.Millisecond)
			is.True(err != nil) // no answer: the request never reached JetStream
			waitFor(t, "violation on "+subj, func() bool {
				return strings.Contains(a.violations(), `Permissions Violation for Publish to "`+subj+`"`)
			})
		}
		// the pull consumer the agent never needed
		qctx, cancel := quick()
		_, err = a.js.CreateOrUpdateConsumer(qctx, events.Stream, jetstream.ConsumerConfig{
			Name: "agent-pi-a", FilterSubject: events.ManifestSubject("pi-a"), AckPolicy: jetstream.AckNonePolicy,
		})
		cancel()
		is.True(err != nil)
		// nor an ordered (ephemeral) consumer on its own manifest
		qctx, cancel = quick()
		cons, err := a.js.OrderedConsumer(qctx, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.ManifestSubject("pi-a")}})
		if err == nil {
			_, err = cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		}
		cancel()
		is.True(err != nil)

		_, err = rebuilds.NextMsg(time.Second)
		is.Equal(err, nats.ErrTimeout) // nothing was delivered to the rebuild subject
		fs, err := env.adminJS.Stream(ctx, events.Stream)
		is.NoErr(err)
		names := fs.ConsumerNames(ctx)
		for n := range names.Name() {
			t.Errorf("consumer %q exists on %s", n, events.Stream)
		}
		is.NoErr(names.Err())
	})

	t.Run("a roll-up on its own heartbeat key purges no other heartbeat", func(t *testing.T) {
		is := is.New(t)
		opKV, err := env.adminJS.KeyValue(ctx, events.HeartbeatBucket)
		is.NoErr(err)
		_, err = opKV.Put(ctx, "pi-b", []byte("b alive"))
		is.NoErr(err)
		_, err = opKV.Put(ctx, "pi-c", []byte("c alive"))
		is.NoErr(err)
		for _, rollup := range []string{"all", "sub"} {
			m := nats.NewMsg("$KV." + events.HeartbeatBucket + ".pi-a")
			m.Data = []byte("a alive")
			m.Header.Set("Nats-Rollup", rollup)
			_, err := a.js.PublishMsg(ctx, m)
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), "rollup not permitted"))
		}
		for _, k := range []string{"pi-b", "pi-c"} {
			e, err := opKV.Get(ctx, k)
			is.NoErr(err) // still there
			is.Equal(string(e.Value()), strings.TrimPrefix(k, "pi-")+" alive")
		}
		// the plain put the agent does still works
		kv, err := a.js.KeyValue(ctx, events.HeartbeatBucket)
		is.NoErr(err)
		_, err = kv.Put(ctx, "pi-a", []byte("a alive"))
		is.NoErr(err)
	})

	t.Run("the bucket stays closed to roll-ups across restarts", func(t *testing.T) {
		is := is.New(t)
		for i := 0; i < 2; i++ {
			_, err := auth.EnsureHeartbeatBucket(ctx, env.adminJS, auth.HeartbeatBucketConfig{TTL: 2 * time.Minute})
			is.NoErr(err)
		}
		s, err := env.adminJS.Stream(ctx, "KV_"+events.HeartbeatBucket)
		is.NoErr(err)
		is.True(!s.CachedInfo().Config.AllowRollup)
		is.Equal(s.CachedInfo().Config.MaxAge, 2*time.Minute)
	})

	t.Run("special headers on its own events reach no other device's data", func(t *testing.T) {
		is := is.New(t)
		before := env.streamMsgs()
		for _, c := range []struct{ header, value, refusal string }{
			{"Nats-Rollup", "all", "rollup not permitted"},
			{"Nats-Rollup", "sub", "rollup not permitted"},
			{"Nats-TTL", "1s", "disabled"},
			{"Nats-Schedule", "@at 2030-01-01T00:00:00Z", "schedul"},
			{"Nats-Incr", "1", "counter"},
		} {
			msg, err := jsstore.Msg(env.event("pi-a", "motd", &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"}))
			is.NoErr(err)
			msg.Header.Set(c.header, c.value)
			if c.header == "Nats-Schedule" {
				msg.Header.Set("Nats-Schedule-Target", events.ManifestSubject("pi-b"))
			}
			_, err = a.js.PublishMsg(ctx, msg)
			is.True(err != nil) // refused by the stream
			is.True(strings.Contains(strings.ToLower(err.Error()), c.refusal))
		}
		// a batch that slips another device's event in writes nothing of it
		err := a.store.AppendBatch(ctx, []events.Event{
			env.event("pi-a", "motd", &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"}),
			env.event("pi-b", "motd", &events.StatusChanged{Kind: "file", From: "Reconciling", To: "Ready", Trigger: "succeeded"}),
		})
		is.True(err != nil)
		is.Equal(env.streamMsgs(), before) // nothing stored: not the refused messages, not half the batch
		last, err := env.admin.LastManifest(ctx, "pi-b")
		is.NoErr(err)
		is.Equal(last.Generation, int64(1)) // the other device's manifest untouched
	})
}

func (e *authEnv) streamMsgs() uint64 {
	e.t.Helper()
	s, err := e.adminJS.Stream(context.Background(), events.Stream)
	if err != nil {
		e.t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}
