package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// TestGetDevicesListsAFleetLargerThanOneReply: 'fleet get devices' on a
// fleet of 500 devices of 40 resources (more than 2 MiB of read model, more
// than one NATS payload) prints every device, as a table and with -o json,
// and --limit, --status and -q select. It failed with "log unavailable:
// context deadline exceeded" before the lists paged.
func TestGetDevicesListsAFleetLargerThanOneReply(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs, err := (&ServerCmd{Data: filepath.Join(t.TempDir(), "server"), Listen: "127.0.0.1:0",
		RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer rs.Stop()
	nc, err := nats.Connect(rs.Env.NATSURL)
	is.NoErr(err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	is.NoErr(err)
	st, err := jsstore.Attach(ctx, js)
	is.NoErr(err)
	evs, err := fixtures.BigFleet(500, 40, time.Now().Add(-time.Hour))
	is.NoErr(err)
	for i := 0; i < len(evs); i += 1000 {
		is.NoErr(st.AppendBatch(ctx, evs[i:min(i+1000, len(evs))]))
	}
	cl := api.NewClient(nc)
	for deadline := time.Now().Add(60 * time.Second); ; {
		s, err := cl.Status(ctx)
		if err == nil && s.Checkpoint >= uint64(len(evs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections did not catch up: %+v %v", s, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	url := "--nats=" + rs.Env.NATSURL

	out, code := replayCLI(t, "get", "devices", "-o", "json", url)
	is.Equal(code, 0)
	var ds []projections.Device
	is.NoErr(json.Unmarshal([]byte(out), &ds))
	t.Logf("-o json: %d devices, %d bytes", len(ds), len(out))
	is.Equal(len(ds), 500)
	is.True(len(out) > 2<<20) // more than one NATS payload
	for i, d := range ds {
		is.Equal(d.Device, evs[i*42].Device) // every device once, in order
		is.Equal(len(d.Resources), 40)
	}

	out, code = replayCLI(t, "get", "devices", url)
	is.Equal(code, 0)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	is.Equal(len(lines), 501) // the header and every device
	is.True(strings.HasPrefix(lines[500], "pi-0499 "))
	is.True(strings.Contains(lines[1], " 40/40 "))

	out, code = replayCLI(t, "get", "devices", "--limit", "7", "-o", "json", url)
	is.Equal(code, 0)
	is.NoErr(json.Unmarshal([]byte(out), &ds))
	is.Equal(len(ds), 7)
	out, code = replayCLI(t, "get", "devices", "-q", "site=site-2", "--after", "pi-0400", url)
	is.Equal(code, 0)
	is.Equal(len(strings.Split(strings.TrimSpace(out), "\n")), 21) // pi-0402, pi-0407, ... pi-0497
	out, code = replayCLI(t, "get", "devices", "--status", "degraded", "-o", "json", url)
	is.Equal(code, 0)
	is.Equal(strings.TrimSpace(out), "[]")
	_, code = replayCLI(t, "get", "devices", "--after", "bad.id", url)
	is.True(code != 0)
}
