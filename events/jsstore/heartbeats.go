package jsstore

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// WatchHeartbeats implements events.Heartbeats with a watch of the
// heartbeat KV bucket. The watch stops when ctx is done or the caller stops
// ranging.
func (s *Store) WatchHeartbeats(ctx context.Context) (iter.Seq[events.Heartbeat], error) {
	kv, err := s.js.KeyValue(ctx, events.HeartbeatBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("heartbeat bucket %s: %w (fleet server creates it)", events.HeartbeatBucket, events.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("heartbeat bucket %s: %w", events.HeartbeatBucket, unavailable(err))
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch heartbeats: %w", unavailable(err))
	}
	return func(yield func(events.Heartbeat) bool) {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the initial values are all delivered
					continue
				}
				if !yield(events.Heartbeat{Device: e.Key(), At: e.Created(), Gone: e.Operation() != jetstream.KeyValuePut}) {
					return
				}
			}
		}
	}, nil
}

var _ events.Heartbeats = (*Store)(nil)
