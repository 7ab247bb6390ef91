package jsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// benchEvents makes n StatusChanged events over 1,000 resources of 10 devices
// (about 300 bytes each on the wire).
func benchEvents(b *testing.B, c *events.Clock, n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		e, err := events.New(fmt.Sprintf("pi-%02d", i%10), fmt.Sprintf("r%03d", (i/10)%100), 1, "agent:bench",
			&events.StatusChanged{Kind: "file", From: "Reconciling", To: "Ready", Trigger: "succeeded", Attempts: 1})
		if err != nil {
			b.Fatal(err)
		}
		c.Stamp(&e)
		evs[i] = e
	}
	return evs
}

// BenchmarkAppend measures fleet's write paths beside raw JetStream
// PublishAsync on the same embedded server in the same run, with the server
// fsyncing before every ack (fleet's default) and with the relaxed default.
// Each sub-benchmark reports events/s and x_raw (its rate over raw's).
//
//	go test ./events/jsstore -run XXX -bench Append -benchtime 20000x
func BenchmarkAppend(b *testing.B) {
	for _, mode := range []struct {
		name    string
		relaxed bool
	}{{"sync=always", false}, {"sync=default", true}} {
		b.Run(mode.name, func(b *testing.B) {
			env := eventstest.Start(b, mode.relaxed)
			ctx := context.Background()
			c, _ := events.NewClock(events.ClockState{}, nil)
			var raw float64
			report := func(b *testing.B, n int, d time.Duration) {
				rate := float64(n) / d.Seconds()
				b.ReportMetric(rate, "events/s")
				if raw > 0 {
					b.ReportMetric(rate/raw, "x_raw")
				}
			}
			b.Run("raw-publishasync", func(b *testing.B) {
				js, err := jetstream.New(env.Conn, jetstream.WithPublishAsyncMaxPending(4000))
				if err != nil {
					b.Fatal(err)
				}
				evs := benchEvents(b, c, b.N)
				b.ResetTimer()
				start := time.Now()
				for _, e := range evs {
					m, _ := jsstore.Msg(e)
					if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-time.After(time.Minute):
					b.Fatal("publish async did not complete")
				}
				d := time.Since(start)
				raw = float64(b.N) / d.Seconds()
				report(b, b.N, d)
			})
			b.Run("single", func(b *testing.B) {
				evs := benchEvents(b, c, b.N)
				b.ResetTimer()
				start := time.Now()
				for _, e := range evs {
					if _, _, err := env.Store.Append(ctx, e); err != nil {
						b.Fatal(err)
					}
				}
				report(b, b.N, time.Since(start))
			})
			for _, size := range []int{10, 500} {
				b.Run(fmt.Sprintf("batch-%d", size), func(b *testing.B) {
					evs := benchEvents(b, c, b.N)
					b.ResetTimer()
					start := time.Now()
					for i := 0; i < len(evs); i += size {
						if err := env.Store.AppendBatch(ctx, evs[i:min(i+size, len(evs))]); err != nil {
							b.Fatal(err)
						}
					}
					report(b, b.N, time.Since(start))
				})
			}
			b.Run("cas-manifest", func(b *testing.B) {
				m := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "x"}}}}
				device := fmt.Sprintf("cas-%d", b.N)
				var seq uint64
				var gen int64
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					res, err := events.ApplyAfter(ctx, env.Store, c, device, m, "user:bench", nil, seq, gen)
					if err != nil {
						b.Fatal(err)
					}
					seq, gen = res.Seq, res.Generation
				}
				report(b, b.N, time.Since(start))
			})
		})
	}
}
