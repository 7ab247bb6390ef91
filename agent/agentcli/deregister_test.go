package agentcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestDeregisterPublishesDeviceDeregistered: --deregister records
// DeviceDeregistered on the device's lifecycle subject, publishes it, says
// so (-o json) and returns; the agent does not start converging.
func TestDeregisterPublishesDeviceDeregistered(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := agentcli.Cmd{Device: "pi-07", Root: t.TempDir(), State: t.TempDir(), DriftInterval: time.Minute,
		Concurrency: 4, Deregister: true, Format: "json"}
	var out bytes.Buffer
	is.NoErr(cmd.Exec(ctx, env.Conn, jsstore.NewLazy(env.Conn), &out))
	var res map[string]any
	is.NoErr(json.Unmarshal(out.Bytes(), &res))
	is.Equal(res["device"], "pi-07")
	is.Equal(res["deregistered"], true)
	is.Equal(res["published"], true)
	is.Equal(res["pending"], float64(0))

	var got []events.Stored
	for s, err := range env.Store.Read(ctx, events.Filter{Device: "pi-07"}) {
		is.NoErr(err)
		got = append(got, s)
	}
	is.Equal(len(got), 1) // DeviceDeregistered only: the agent did not run
	is.Equal(got[0].Type, events.TypeDeviceDeregistered)
	is.Equal(got[0].Subject, events.LifecycleSubject("pi-07"))
	is.Equal(got[0].Actor, "agent:pi-07")
	p, err := got[0].Payload()
	is.NoErr(err)
	is.True(p.(*events.DeviceDeregistered).Reason != "") // says why
}

// TestDeregisterWithoutServerKeepsTheEvent: with no server, --deregister
// fails naming what is pending, and the event goes out from the outbox on
// the next start.
func TestDeregisterWithoutServerKeepsTheEvent(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	state := t.TempDir()
	down, err := nats.Connect("nats://127.0.0.1:1", nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	is.NoErr(err)
	defer down.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := agentcli.Cmd{Device: "pi-08", Root: t.TempDir(), State: state, DriftInterval: time.Minute,
		Concurrency: 4, Deregister: true, Format: "table"}
	var out bytes.Buffer
	is.True(cmd.Exec(ctx, down, jsstore.NewLazy(down), &out) != nil) // not published: an error
	is.True(bytes.Contains(out.Bytes(), []byte("deregistered locally; 1 events wait")))

	// Next time, with the server: the kept event is published (once).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	out.Reset()
	is.NoErr(cmd.Exec(ctx2, env.Conn, jsstore.NewLazy(env.Conn), &out))
	n := 0
	for s, err := range env.Store.Read(ctx2, events.Filter{Device: "pi-08"}) {
		is.NoErr(err)
		is.Equal(s.Type, events.TypeDeviceDeregistered)
		n++
	}
	is.Equal(n, 2) // the kept one and this run's: each recorded once
}
