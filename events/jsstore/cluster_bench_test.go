package jsstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// BenchmarkClusterR3 measures, on a real 3-node cluster (nats-server
// processes, sync_interval always, FLEET R3): raw jetstreamext atomic
// batches of 500 of the same encoded events, then fleet's AppendBatch in
// batches of 500 (events/s and x_raw), and the failover time: the stream
// leader killed with SIGKILL until the first acknowledged write
// (failover_s, one kill per iteration). interleaved-500 alternates raw
// and fleet batches in one run: the fair comparison.
//
//	go test ./events/jsstore -run XXX -bench ClusterR3 -benchtime 20000x
func BenchmarkClusterR3(b *testing.B) {
	c := eventstest.StartCluster(b, 3, eventstest.ClusterOptions{})
	nc := c.Connect()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := jsstore.Open(ctx, js, jsstore.Config{Replicas: 3})
	if err != nil {
		b.Fatal(err)
	}
	c.WaitStreamLeader(js, events.Stream, 30*time.Second)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	var raw float64
	b.Run("raw-jetstreamext-batch-500", func(b *testing.B) {
		evs := benchEvents(b, clock, b.N)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < len(evs); i += 500 {
			msgs := make([]*nats.Msg, 0, 500)
			for _, e := range evs[i:min(i+500, len(evs))] {
				m, _ := jsstore.Msg(e)
				msgs = append(msgs, m)
			}
			if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs); err != nil {
				b.Fatal(err)
			}
		}
		raw = float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(raw, "events/s")
	})
	b.Run("AppendBatch-500", func(b *testing.B) {
		evs := benchEvents(b, clock, b.N)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < len(evs); i += 500 {
			if err := st.AppendBatch(ctx, evs[i:min(i+500, len(evs))]); err != nil {
				b.Fatal(err)
			}
		}
		rate := float64(b.N) / time.Since(start).Seconds()
		b.ReportMetric(rate, "events/s")
		if raw > 0 {
			b.ReportMetric(rate/raw, "x_raw")
		}
	})
	// interleaved: raw and fleet batches alternate (which goes first
	// alternates too), so both see the same stream size, the same
	// replicas' state and the same moment of a shared machine; the two
	// runs above are minutes apart in the worst case and the second one
	// always writes to the larger stream.
	b.Run("interleaved-500", func(b *testing.B) {
		raws, fleets := benchEvents(b, clock, b.N), benchEvents(b, clock, b.N)
		b.ResetTimer()
		var tRaw, tFleet time.Duration
		for k, i := 0, 0; i < b.N; k, i = k+1, i+500 {
			rawBatch := func() {
				start := time.Now()
				msgs := make([]*nats.Msg, 0, 500)
				for _, e := range raws[i:min(i+500, b.N)] {
					m, _ := jsstore.Msg(e)
					msgs = append(msgs, m)
				}
				if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs); err != nil {
					b.Fatal(err)
				}
				tRaw += time.Since(start)
			}
			fleetBatch := func() {
				start := time.Now()
				if err := st.AppendBatch(ctx, fleets[i:min(i+500, b.N)]); err != nil {
					b.Fatal(err)
				}
				tFleet += time.Since(start)
			}
			if k%2 == 0 {
				rawBatch()
				fleetBatch()
			} else {
				fleetBatch()
				rawBatch()
			}
		}
		b.ReportMetric(float64(b.N)/tRaw.Seconds(), "raw_events/s")
		b.ReportMetric(float64(b.N)/tFleet.Seconds(), "events/s")
		b.ReportMetric(tRaw.Seconds()/tFleet.Seconds(), "x_raw")
	})
	b.Run("failover", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			leader := c.WaitStreamLeader(js, events.Stream, 60*time.Second)
			e := benchEvents(b, clock, 1)[0]
			start := time.Now()
			leader.Kill()
			if _, _, err := st.Append(ctx, e); err != nil {
				b.Fatal(err)
			}
			total += time.Since(start)
			leader.Start()
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "failover_s")
	})
}
