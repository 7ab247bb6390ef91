package agent

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// BenchmarkOutboxDrainR3 is BenchmarkOutboxDrain on a real 3-node cluster
// (nats-server processes, sync_interval always, FLEET R3).
//
//	go test ./agent -run XXX -bench OutboxDrainR3 -benchtime 5x
func BenchmarkOutboxDrainR3(b *testing.B) {
	c := eventstest.StartCluster(b, 3, eventstest.ClusterOptions{})
	nc := c.Connect()
	js, _ := jetstream.New(nc)
	if _, err := jsstore.Open(context.Background(), js, jsstore.Config{Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	c.WaitStreamLeader(js, events.Stream, 30*time.Second)
	benchDrain(b, nc, js)
}
