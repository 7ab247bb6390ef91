package projections

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

var benchEvents = flag.Int("bench-events", 100000, "events in the rebuild benchmark's log (the issue asks 1,000,000)")

// BenchmarkRebuild rebuilds the read models from a generated log and reports
// events/s beside a raw ordered-consumer read of the same stream.
func BenchmarkRebuild(b *testing.B) {
	env := eventstest.Start(b, true)
	evs := fixtures.GenerateLog(31, fixtures.Options{Devices: 200, Resources: 6, Events: *benchEvents, UnknownKind: true})
	last := appendLog(b, env, evs, false)
	ctx := context.Background()
	b.ResetTimer()
	var rawRate, rate float64
	for range b.N {
		start := time.Now()
		cons, err := env.JS.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		cc, err := cons.Consume(func(m jetstream.Msg) {
			md, _ := m.Metadata()
			if md.Sequence.Stream == last {
				close(done)
			}
		}, jetstream.PullMaxMessages(4096))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		cc.Stop()
		rawRate = float64(last) / time.Since(start).Seconds()

		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		if err := s.Rebuild(ctx, env.JS, nil); err != nil {
			b.Fatal(err)
		}
		rate = float64(last) / time.Since(start).Seconds()
		s.Close()
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(rate/rawRate, "of-raw")
}
