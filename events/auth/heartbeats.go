package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// HeartbeatBucketConfig is how fleet server keeps the heartbeat bucket.
type HeartbeatBucketConfig struct {
	TTL      time.Duration // how long a heartbeat lives; 0: for ever
	Replicas int           // 0 means 1
}

// EnsureHeartbeatBucket creates the heartbeat KV bucket (events.HeartbeatBucket)
// or brings an existing one to cfg, and in both cases refuses roll-ups on
// its stream: a device may put its own key, and a `Nats-Rollup: all` (or
// `sub`) header on that put would otherwise purge every other device's
// heartbeat (or the history of its own key). nats.go's KV needs roll-ups
// only for Purge, which fleet never calls; Put, Get and Watch work without.
// Idempotent: call it at every start (nats.go's CreateOrUpdateKeyValue
// alone turns roll-ups back on).
//
// The first creation makes the bucket with nats.go's KV defaults and then
// tightens it; an existing bucket is updated in one step, so a restart opens
// no window in which roll-ups are allowed.
func EnsureHeartbeatBucket(ctx context.Context, js jetstream.JetStream, cfg HeartbeatBucketConfig) (jetstream.KeyValue, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	name := "KV_" + events.HeartbeatBucket
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: events.HeartbeatBucket, Description: "fleet agent heartbeats (not history)",
			TTL: cfg.TTL, Storage: jetstream.FileStorage, Replicas: cfg.Replicas, History: 1,
		}); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return nil, fmt.Errorf("heartbeat bucket: create: %w", err)
		}
		if s, err = js.Stream(ctx, name); err != nil {
			return nil, fmt.Errorf("heartbeat bucket: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("heartbeat bucket: %w", err)
	}
	have := s.CachedInfo().Config
	want := have
	want.AllowRollup = false
	want.MaxAge = cfg.TTL
	want.Replicas = cfg.Replicas
	want.MaxMsgsPerSubject = 1
	if have.AllowRollup || have.MaxAge != want.MaxAge || have.Replicas != want.Replicas || have.MaxMsgsPerSubject != 1 {
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return nil, fmt.Errorf("heartbeat bucket: refuse roll-ups on %s: %w", name, err)
		}
	}
	kv, err := js.KeyValue(ctx, events.HeartbeatBucket)
	if err != nil {
		return nil, fmt.Errorf("heartbeat bucket: %w", err)
	}
	return kv, nil
}
