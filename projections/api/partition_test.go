package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/micro"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// worker is a projection service with its micro service.
type worker struct {
	svc  *projections.Service
	api  *api.Server
	ms   micro.Service
	stop func()
}

func startWorker(t *testing.T, env *eventstest.Env, last uint64, durable string, opts ...projections.Option) *worker {
	t.Helper()
	svc, err := projections.Open(t.TempDir(), append(opts, projections.WithDurable(durable))...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, env.JS) }()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if err := svc.WaitFor(wctx, last); err != nil {
		t.Fatal(err)
	}
	a := api.NewServer(svc, env.Store, time.Minute)
	ms, err := a.AddMicro(env.Conn)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{svc: svc, api: a, ms: ms}
	stopped := false
	w.stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = ms.Stop()
		cancel()
		<-done
		svc.Close()
	}
	t.Cleanup(w.stop)
	return w
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPartitionedWorkersMergeToTheUnpartitionedAnswers: two projection
// workers (WithPartition 0/2 and 1/2) and one unpartitioned service fold
// the same 200,000-event log (fixtures.GenerateLog; FLEET_PARTITION_EVENTS
// changes the size). Through the micro service, the merged answers equal
// the unpartitioned service's byte for byte: every device, every page of
// the device list and of the summaries (with their fleet totals), one
// device's drift history; and each worker's stored parts are exactly its
// devices' parts of the unpartitioned store. With one worker stopped, the
// other's devices still answer, the merged list names the missing
// partition, and a device of the stopped worker is unavailable, naming it.
func TestPartitionedWorkersMergeToTheUnpartitionedAnswers(t *testing.T) {
	if testing.Short() {
		t.Skip("folds a 200k-event log three times")
	}
	is := is.New(t)
	ctx := context.Background()
	n := 200_000
	if s := os.Getenv("FLEET_PARTITION_EVENTS"); s != "" {
		fmt.Sscan(s, &n)
	}
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(12, fixtures.Options{Devices: 300, Resources: 5, Events: n, DriftRate: 0.1})
	is.NoErr(env.Store.AppendBatch(ctx, evs))
	last, err := env.Store.LastSeq(ctx)
	is.NoErr(err)

	start := time.Now()
	single := startWorker(t, env, last, "single")
	tSingle := time.Since(start)
	start = time.Now()
	w := []*worker{
		startWorker(t, env, last, "part-0", projections.WithPartition(events.Partition{I: 0, N: 2})),
		startWorker(t, env, last, "part-1", projections.WithPartition(events.Partition{I: 1, N: 2})),
	}
	t.Logf("%d events (%d messages): unpartitioned fold %s; two workers one after the other %s", len(evs), last, tSingle.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n0, err := api.DiscoverPartitions(wctx, env.Conn, 300*time.Millisecond)
	is.NoErr(err)
	is.Equal(n0, 2) // found from the workers' metadata
	one := api.NewClient(env.Conn)
	merged := api.NewClientFor(wctx, env.Conn)

	// the stores: each worker holds exactly its devices' parts
	want, err := single.svc.Dump()
	is.NoErr(err)
	for i, wk := range w {
		got, err := wk.svc.Dump()
		is.NoErr(err)
		p := events.Partition{I: i, N: 2}
		mine := 0
		for k, v := range want {
			dev, ok := partDevice(k)
			if !ok || !p.Owns(dev) {
				continue
			}
			mine++
			if got[k] != v {
				t.Fatalf("worker %s: part %s differs from the unpartitioned store:\n got %.200q\nwant %.200q", p, k, got[k], v)
			}
		}
		for k := range got {
			if dev, ok := partDevice(k); ok && !p.Owns(dev) {
				t.Fatalf("worker %s holds %s, a part of another partition's device", p, k)
			}
		}
		t.Logf("worker %s: %d parts, all equal to the unpartitioned store's", p, mine)
	}

	// the answers, byte for byte
	for _, limit := range []int{api.MaxLimit, 7} {
		a, err := one.EachDevice(wctx, api.ListOptions{Limit: limit}, 0)
		is.NoErr(err)
		b, err := merged.EachDevice(wctx, api.ListOptions{Limit: limit}, 0)
		is.NoErr(err)
		is.Equal(len(a), 300)
		is.True(bytes.Equal(mustJSON(t, a), mustJSON(t, b)))
		sa, fa, ta, err := one.EachSummary(wctx, api.ListOptions{Limit: limit}, 0)
		is.NoErr(err)
		sb, fb, tb, err := merged.EachSummary(wctx, api.ListOptions{Limit: limit}, 0)
		is.NoErr(err)
		is.True(bytes.Equal(mustJSON(t, sa), mustJSON(t, sb)))
		is.True(bytes.Equal(mustJSON(t, fa), mustJSON(t, fb)))
		is.Equal(ta, tb)
	}
	ids := single.svc.DeviceIDs()
	for _, id := range ids {
		a, err := one.Device(wctx, id)
		is.NoErr(err)
		b, err := merged.Device(wctx, id)
		is.NoErr(err)
		if !bytes.Equal(mustJSON(t, a), mustJSON(t, b)) {
			t.Fatalf("device %s: the owner's answer differs from the unpartitioned one", id)
		}
	}
	da, err := one.Drift(wctx, ids[0])
	is.NoErr(err)
	db, err := merged.Drift(wctx, ids[0])
	is.NoErr(err)
	is.True(bytes.Equal(mustJSON(t, da), mustJSON(t, db)))

	// the HTTP API: merged routes give the unpartitioned routes' bodies
	singleMux, mergedMux := http.NewServeMux(), http.NewServeMux()
	single.api.Routes(singleMux)
	api.MergedRoutes(mergedMux, merged)
	hs1, hs2 := httptest.NewServer(singleMux), httptest.NewServer(mergedMux)
	defer hs1.Close()
	defer hs2.Close()
	body := func(base, path string) (int, []byte) {
		res, err := http.Get(base + path)
		is.NoErr(err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		is.NoErr(err)
		return res.StatusCode, b
	}
	for _, path := range []string{"/api/devices?limit=50", "/api/devices?limit=20&after=" + ids[100], "/api/summary?limit=40",
		"/api/devices/" + ids[3], "/api/devices/" + ids[4] + "/drift", "/api/devices/nosuch"} {
		c1, b1 := body(hs1.URL, path)
		c2, b2 := body(hs2.URL, path)
		is.Equal(c1, c2)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("GET %s: the merged body differs from the unpartitioned one:\n%.300s\n%.300s", path, b1, b2)
		}
	}
	code, _ := body(hs2.URL, "/healthz")
	is.Equal(code, http.StatusOK)

	// worker 1 stops: worker 0's devices answer, worker 1's say who is missing
	w[1].stop()
	code, b := body(hs2.URL, "/healthz")
	is.Equal(code, http.StatusServiceUnavailable)
	is.True(strings.Contains(string(b), "partition 1/2 did not answer"))
	code, b = body(hs2.URL, "/api/devices?limit=10")
	is.Equal(code, http.StatusOK)
	is.True(strings.Contains(string(b), `"missingPartitions":["1/2"]`))
	page, err := merged.DevicesPage(wctx, api.ListOptions{Limit: api.MaxLimit})
	is.NoErr(err)
	is.Equal(page.Missing, []string{"1/2"})
	is.Equal(merged.Missing(), []string{"1/2"}) // what fleet get devices warns about
	p0 := events.Partition{I: 0, N: 2}
	for _, d := range page.Devices {
		is.True(p0.Owns(d.Device))
	}
	for _, id := range ids {
		b, err := merged.Device(wctx, id)
		if p0.Owns(id) {
			is.NoErr(err)
			a, _ := one.Device(wctx, id)
			is.True(bytes.Equal(mustJSON(t, a), mustJSON(t, b)))
			continue
		}
		is.True(errors.Is(err, events.ErrUnavailable))
		is.True(strings.Contains(err.Error(), "partition 1/2"))
	}
	t.Logf("worker 1/2 stopped: %d devices of 0/2 answer, %d of 1/2 unavailable (named)", len(page.Devices), len(ids)-len(page.Devices))
}

// partDevice is the device of a read-model key <kind>/<device>[/<resource>].
func partDevice(k string) (string, bool) {
	if len(k) < 3 || k[1] != '/' {
		return "", false
	}
	dev, _, _ := strings.Cut(k[2:], "/")
	return dev, events.ValidID(dev)
}
