package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections/api"
)

// TestPartitionFlagIsCheckedBeforeConnecting: a bad --partition is a usage
// error (exit 2) naming the flag and the rule, before any connection.
func TestPartitionFlagIsCheckedBeforeConnecting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2/2", "I must be from 0 to N-1"},
		{"0/0", "N must be from 1 to"},
		{"half", "must be I/N"},
	} {
		is := is.New(t)
		err := (&ProjectCmd{Partition: tc.in, Durable: "fleet-project", Data: t.TempDir()}).Run(context.Background(), &Globals{NATS: "nats://127.0.0.1:1"})
		is.True(err != nil)
		is.Equal(exitCode(err), 2)
		is.True(strings.Contains(err.Error(), "--partition"))
		is.True(strings.Contains(err.Error(), tc.want))
	}
}

// TestPartitionWorkersThroughTheCLI: `fleet project --partition 0/2` and
// `1/2` beside an unpartitioned `fleet project`, and `fleet project --front
// --http`: the client fleet get uses finds the two workers and its merged
// answers equal the unpartitioned service's; the front serves them over
// HTTP; with worker 1/2 stopped, worker 0/2's devices still answer and the
// list names the missing partition.
func TestPartitionWorkersThroughTheCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three projection services")
	}
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	is.NoErr(env.Store.AppendBatch(ctx, fixtures.GenerateLog(5, fixtures.Options{Devices: 20, Events: 3000})))
	g := &Globals{NATS: env.Server.URL()}
	run := func(c *ProjectCmd) context.CancelFunc {
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := c.Run(wctx, g); err != nil && wctx.Err() == nil {
				t.Errorf("fleet project %+v: %v", c, err)
			}
		}()
		stop := func() { wcancel(); <-done }
		t.Cleanup(stop)
		return stop
	}
	run(&ProjectCmd{Data: t.TempDir(), Durable: "single", HeartbeatTTL: 3 * time.Minute})
	run(&ProjectCmd{Data: t.TempDir(), Durable: "fleet-project", Partition: "0/2", HeartbeatTTL: 3 * time.Minute})
	stop1 := run(&ProjectCmd{Data: t.TempDir(), Durable: "fleet-project", Partition: "1/2", HeartbeatTTL: 3 * time.Minute})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	front := l.Addr().String()
	l.Close()
	run(&ProjectCmd{Front: true, HTTP: front})

	nc, err := g.Connect("test")
	is.NoErr(err)
	defer nc.Close()
	one := api.NewClient(nc)
	var merged *api.Client
	eventstest.WaitFor(t, 30*time.Second, "the merged answers equal the unpartitioned service's", func() bool {
		cl, done, err := readClient(g) // what fleet get uses
		if err != nil {
			return false
		}
		defer done()
		a, err1 := one.EachDevice(ctx, api.ListOptions{Limit: 7}, 0)
		b, err2 := cl.EachDevice(ctx, api.ListOptions{Limit: 7}, 0)
		if err1 != nil || err2 != nil || len(a) != 20 {
			return false
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		merged = api.Partitioned(nc, 2)
		return bytes.Equal(ja, jb) && cl.Missing() == nil
	})
	var page api.DevicePage
	eventstest.WaitFor(t, 10*time.Second, "the front answers", func() bool {
		res, err := http.Get("http://" + front + "/api/devices?limit=100")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		return res.StatusCode == 200 && json.NewDecoder(res.Body).Decode(&page) == nil
	})
	is.Equal(len(page.Devices), 20)

	stop1()
	p0 := events.Partition{I: 0, N: 2}
	ds, err := merged.EachDevice(ctx, api.ListOptions{Limit: api.MaxLimit}, 0)
	is.NoErr(err)
	is.Equal(merged.Missing(), []string{"1/2"})
	for _, d := range ds {
		is.True(p0.Owns(d.Device))
		_, err := merged.Device(ctx, d.Device)
		is.NoErr(err)
	}
	is.True(len(ds) > 0 && len(ds) < 20)
}
