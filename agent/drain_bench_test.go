package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// statusEvent is a typical agent event.
func statusEvent(device string, i int) *events.StatusChanged {
	return &events.StatusChanged{Kind: events.KindFile, From: "Reconciling", To: "Ready", Trigger: "succeeded", Attempts: 1}
}

// BenchmarkOutboxDrain measures the outbox drainer (read from Pebble, atomic
// batches of jsstore.MaxBatch, delete after the ack) against raw
// jetstreamext.PublishMsgBatch of the same events in the same batch size, on
// the same fsync-always server, in the same run.
func BenchmarkOutboxDrain(b *testing.B) {
	env := eventstest.Start(b, false) // fsync before every ack
	benchDrain(b, env.Conn, env.JS)
}

// benchDrain is BenchmarkOutboxDrain against the log behind nc (js).
func benchDrain(b *testing.B, nc *nats.Conn, js jetstream.JetStream) {
	const n = 5000
	a, err := New("drain-01", WithStateDir(b.TempDir()), WithRoot(b.TempDir()),
		WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	conn := &logConn{nc: nc, log: jsstore.NewLazy(nc)}
	ctx := context.Background()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	var agentDur, rawDur time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		t := a.begin()
		for j := range n {
			if _, err := t.emit(fmt.Sprintf("r%03d", j%100), 1, "", "", statusEvent("drain-01", j)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := t.commit(); err != nil {
			b.Fatal(err)
		}
		msgs := make([]*nats.Msg, n)
		for j := range msgs {
			e, _ := events.New("raw-01", fmt.Sprintf("r%03d", j%100), 1, "agent:raw-01", statusEvent("raw-01", j))
			clock.Stamp(&e)
			msgs[j], _ = jsstore.Msg(e)
		}
		b.StartTimer()

		t0 := time.Now()
		if err := a.drainAll(ctx, conn); err != nil {
			b.Fatal(err)
		}
		agentDur += time.Since(t0)
		if a.OutboxLen() != 0 {
			b.Fatalf("outbox not empty: %d", a.OutboxLen())
		}

		t0 = time.Now()
		for k := 0; k < n; k += jsstore.MaxBatch {
			if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs[k:min(k+jsstore.MaxBatch, n)]); err != nil {
				b.Fatal(err)
			}
		}
		rawDur += time.Since(t0)
	}
	b.StopTimer()
	agentRate := float64(n*b.N) / agentDur.Seconds()
	rawRate := float64(n*b.N) / rawDur.Seconds()
	b.ReportMetric(agentRate, "outbox-events/s")
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(agentRate/rawRate, "outbox/raw")
}
