package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections/api"
)

// generationFloor is the highest generation of device known outside its
// manifest subject: the read models' (desired and observed) and the agent's
// heartbeat (the generation it runs). A log that lost its last manifests
// (a damaged block) still has these, so fleet apply never writes a
// generation again that an agent may already have applied. Sources that do
// not answer (no projection service, no heartbeat) are left out; seen names
// the ones that did, with what they said.
func generationFloor(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, device string) (floor int64, seen []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl := api.NewClient(nc)
	cl.Timeout = 2 * time.Second
	if d, err := cl.Device(ctx, device); err == nil {
		g := max(d.Generation, d.ObservedGeneration)
		floor = max(floor, g)
		seen = append(seen, fmt.Sprintf("read models %d", g))
	}
	if kv, err := js.KeyValue(ctx, events.HeartbeatBucket); err == nil {
		if e, err := kv.Get(ctx, device); err == nil {
			var hb struct {
				Generation int64 `json:"generation"`
			}
			if json.Unmarshal(e.Value(), &hb) == nil {
				floor = max(floor, hb.Generation)
				seen = append(seen, fmt.Sprintf("agent heartbeat %d", hb.Generation))
			}
		}
	}
	return floor, seen
}
