package jsstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestWatchHeartbeatsYieldsBeatsThenChanges: no bucket is ErrNotFound; a
// watch yields the beats stored, then new beats and removals.
func TestWatchHeartbeatsYieldsBeatsThenChanges(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := env.Store.WatchHeartbeats(ctx)
	is.True(errors.Is(err, events.ErrNotFound)) // no bucket yet

	kv, err := env.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.HeartbeatBucket})
	is.NoErr(err)
	_, err = kv.Put(ctx, "pi-01", []byte("{}"))
	is.NoErr(err)
	beats, err := env.Store.WatchHeartbeats(ctx)
	is.NoErr(err)
	var got []events.Heartbeat
	for b := range beats {
		got = append(got, b)
		switch len(got) {
		case 1:
			_, err = kv.Put(ctx, "pi-02", []byte("{}"))
			is.NoErr(err)
		case 2:
			is.NoErr(kv.Delete(ctx, "pi-01"))
		}
		if len(got) == 3 {
			break
		}
	}
	is.Equal(len(got), 3)
	is.Equal(got[0].Device, "pi-01")
	is.True(!got[0].Gone && !got[0].At.IsZero())
	is.Equal(got[1].Device, "pi-02")
	is.Equal(got[2], events.Heartbeat{Device: "pi-01", At: got[2].At, Gone: true})
}
