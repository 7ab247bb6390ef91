package timetravel_test

import (
	"bufio"
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

var (
	benchEvents  = flag.Int("tt.events", 1_000_000, "events in the benchmark log")
	benchDevices = flag.Int("tt.devices", 10, "devices in the benchmark log (each gets events/devices events)")
	benchQueries = flag.Int("tt.queries", 2000, "inspect-at answers timed per benchmark iteration")
)

// BenchmarkTimeTravel builds a log of -tt.events events over -tt.devices
// devices (1M and 10 by default: 100k events a device, with offline periods
// and late flushes) on a real server, indexes it with the time-travel
// index, then measures:
//   - inspect-at: answers for one device at random event times (p50, p99),
//     beside a full replay of that device (read its events, fold) in the same run;
//   - replay-ndjson: reading the whole log and writing it as NDJSON (what
//     `fleet replay -o ndjson` does), beside a raw ordered-consumer read.
//
// Each iteration is one whole measurement (-tt.queries answers, or one read
// of the whole log), so run it once:
//
//	go test ./replay/timetravel/ -run XXX -bench TimeTravel -benchtime 1x
func BenchmarkTimeTravel(b *testing.B) {
	ctx := context.Background()
	env := eventstest.Start(b, true)
	start := time.Now()
	evs := fixtures.GenerateLog(42, fixtures.Options{Devices: *benchDevices, Events: *benchEvents, OfflineRate: 0.02})
	for i := 0; i < len(evs); i += 10_000 {
		if err := env.Store.AppendBatch(ctx, evs[i:min(i+10_000, len(evs))]); err != nil {
			b.Fatal(err)
		}
	}
	dev := "pi-001"
	var devAts []time.Time
	for _, e := range evs {
		if e.Device == dev {
			devAts = append(devAts, e.At)
		}
	}
	evs = nil
	b.Logf("log of %d events appended in %s; %s has %d events", *benchEvents, time.Since(start).Round(time.Millisecond), dev, len(devAts))

	b.Run("inspect-at", func(b *testing.B) {
		x, stop := startIndex(b, env, b.TempDir(), timetravel.DefaultSnapshotEvery)
		defer stop()
		start = time.Now()
		ictx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		if err := x.WaitFor(ictx, uint64(*benchEvents)); err != nil {
			b.Fatal(err)
		}
		indexRate := float64(*benchEvents) / time.Since(start).Seconds()
		b.Logf("indexed in %s (%.0f events/s)", time.Since(start).Round(time.Millisecond), indexRate)
		rng := rand.New(rand.NewPCG(1, 2))
		for range b.N {
			durs := make([]time.Duration, 0, *benchQueries)
			var folded, late int
			for range *benchQueries {
				q := timetravel.Query{Device: dev, At: devAts[rng.IntN(len(devAts))]}
				t0 := time.Now()
				_, _, st, err := x.Answer(q)
				if err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(t0))
				folded += st.Folded
				late += st.Late
			}
			slices.Sort(durs)
			p50, p99 := durs[len(durs)/2], durs[len(durs)*99/100]
			// a full replay of the device, in the same run: read its events and fold them
			var full []time.Duration
			for range 3 {
				q := timetravel.Query{Device: dev, At: devAts[rng.IntN(len(devAts))]}
				t0 := time.Now()
				if _, _, _, err := timetravel.FoldAt(env.Store.Read(ctx, events.Filter{Device: dev}), q); err != nil {
					b.Fatal(err)
				}
				full = append(full, time.Since(t0))
			}
			slices.Sort(full)
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(full[1].Microseconds())/1000, "full-replay-ms")
			b.ReportMetric(float64(full[1])/float64(p50), "speedup-x")
			b.ReportMetric(float64(folded)/float64(*benchQueries), "folded/answer")
			b.ReportMetric(float64(late)/float64(*benchQueries), "late/answer")
			b.ReportMetric(indexRate, "index-events/s")
		}
	})

	b.Run("replay-ndjson", func(b *testing.B) {
		for range b.N {
			t0 := time.Now()
			w := bufio.NewWriterSize(io.Discard, 1<<16)
			n := 0
			var line []byte
			for s, err := range env.Store.Read(ctx, events.Filter{}) { // as fleet replay -o ndjson
				if err != nil {
					b.Fatal(err)
				}
				line = append(events.AppendStoredJSON(line[:0], s), '\n')
				w.Write(line)
				n++
			}
			w.Flush()
			replayRate := float64(n) / time.Since(t0).Seconds()

			t0 = time.Now()
			raw := rawRead(b, env.JS)
			rawRate := float64(raw) / time.Since(t0).Seconds()
			b.ReportMetric(replayRate, "replay-events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(replayRate/rawRate, "of-raw")
		}
	})
}

// rawRead reads the whole stream with an ordered consumer, touching nothing
// but the bytes: the ceiling for any reader.
func rawRead(b *testing.B, js jetstream.JetStream) int {
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	n, bytes := 0, 0
	for {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		bytes += len(m.Data())
		n++
		md, _ := m.Metadata()
		if md.NumPending == 0 {
			return n
		}
	}
}
