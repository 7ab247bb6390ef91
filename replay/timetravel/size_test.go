package timetravel_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// growingDevice returns n StatusChanged events of one device, each on a
// resource it has not reported before, so that the device's fold grows with
// every event: the shape that made a snapshot every K events quadratic
// (issue 16, finding 6).
func growingDevice(t testing.TB, device string, n int) []events.Event {
	clock, err := events.NewClock(events.ClockState{}, func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	if err != nil {
		t.Fatal(err)
	}
	out := make([]events.Event, 0, n)
	for i := range n {
		e, err := events.New(device, fmt.Sprintf("r%05d", i), 1, "agent:"+device,
			&events.StatusChanged{Kind: events.KindFile, From: "Reconciling", To: "Ready", Trigger: "succeeded", Attempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		clock.Stamp(&e)
		out = append(out, e)
	}
	return out
}

// indexSize appends evs to a fresh real server, indexes the log with a
// real Pebble index, settles it (flush, full compaction) and returns the
// index's data bytes (live sstables) and the stream's bytes.
func indexSize(t testing.TB, evs []events.Event) (index, logBytes uint64, x *timetravel.Index) {
	ctx := context.Background()
	env := eventstest.Start(t, true)
	for i := 0; i < len(evs); i += 1000 {
		if err := env.Store.AppendBatch(ctx, evs[i:min(i+1000, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	x, stop := startIndex(t, env, t.TempDir(), timetravel.DefaultSnapshotEvery)
	t.Cleanup(stop)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := x.WaitFor(wctx, uint64(len(evs))); err != nil {
		t.Fatal(err)
	}
	st, err := env.JS.Stream(ctx, events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	size, err := x.DiskUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("index of %d events: %d bytes of data, %d on disk with the WAL", len(evs), size.Data, size.Disk)
	return size.Data, st.CachedInfo().State.Bytes, x
}

// TestIndexGrowsLinearlyWithADevicesEvents: twice the events of one device
// whose state grows with each event cost at most 2.5 times the index bytes
// (a quadratic index costs about 4 times), measured on a real Pebble store
// after a flush and a full compaction; and the index stays within twice the
// log's own bytes. Answers still equal the full fold.
func TestIndexGrowsLinearlyWithADevicesEvents(t *testing.T) {
	is := is.New(t)
	const n = 4000
	small, smallLog, _ := indexSize(t, growingDevice(t, "big-01", n))
	evs := growingDevice(t, "big-01", 2*n)
	large, largeLog, x := indexSize(t, evs)
	t.Logf("%d events: index %d bytes for %d of log (%.2f per log byte); %d events: index %d for %d (%.2f); growth %.2fx",
		n, small, smallLog, float64(small)/float64(smallLog), 2*n, large, largeLog, float64(large)/float64(largeLog), float64(large)/float64(small))
	is.True(float64(large) <= 2.5*float64(small)) // linear, not quadratic
	is.True(large <= 2*largeLog)                  // the index does not take more than twice the log

	var log []events.Stored
	for i, e := range evs {
		log = append(log, events.Stored{Event: e, Seq: uint64(i + 1)})
	}
	for _, i := range []int{0, 127, 128, 1000, n, 2*n - 1} {
		q := timetravel.Query{Device: "big-01", At: evs[i].At}
		fast, ok, st, err := x.Answer(q)
		is.NoErr(err)
		is.True(ok)
		full, _, _, err := timetravel.FoldAt(slice(log), q)
		is.NoErr(err)
		is.Equal(string(mustJSON(t, fast)), string(mustJSON(t, full))) // still the full fold
		is.True(st.Folded <= timetravel.DefaultSnapshotEvery || st.FoldedBytes <= st.SnapshotBytes+4096)
	}
}

// BenchmarkIndexSize prints the index's bytes per byte of log (data:
// live sstables after a flush and a full compaction) and answer times, for
// one device with 20,000 and 40,000 status events each on a new resource
// (the quadratic case) and for an honest device of 1,000 files
// living a generated life (failures, drift, offline periods) over 20,000
// events. One iteration is one whole measurement:
//
//	go test ./replay/timetravel/ -run '^$' -bench IndexSize -benchtime 1x
func BenchmarkIndexSize(b *testing.B) {
	cases := []struct {
		name string
		evs  func() []events.Event
	}{
		{"status-20k", func() []events.Event { return growingDevice(b, "big-01", 20_000) }},
		{"status-40k", func() []events.Event { return growingDevice(b, "big-01", 40_000) }},
		{"files-1000", func() []events.Event {
			return fixtures.GenerateLog(5, fixtures.Options{Devices: 1, Resources: 1000, Events: 20_000, OfflineRate: 0.02})
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				evs := c.evs()
				start := time.Now()
				index, logBytes, x := indexSize(b, evs)
				b.ReportMetric(time.Since(start).Seconds(), "build-s")
				b.ReportMetric(float64(index)/float64(logBytes), "index-bytes/log-byte")
				b.ReportMetric(float64(index)/1e6, "index-MB")
				b.ReportMetric(float64(logBytes)/1e6, "log-MB")
				var durs []time.Duration
				var folded int
				rng := rand.New(rand.NewPCG(1, 2))
				for range 200 {
					q := timetravel.Query{Device: evs[0].Device, At: evs[rng.IntN(len(evs))].At}
					t0 := time.Now()
					_, _, st, err := x.Answer(q)
					if err != nil {
						b.Fatal(err)
					}
					durs = append(durs, time.Since(t0))
					folded += st.Folded
				}
				slices.Sort(durs)
				b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "answer-p50-ms")
				b.ReportMetric(float64(folded)/float64(len(durs)), "folded/answer")
			}
		})
	}
}
