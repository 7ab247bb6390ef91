package jsstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// After an outage a FLEET takes up its source across the link again on
// its own, but slowly: nats-server retries a source it cannot reach with a
// growing backoff (10 s, 20 s, 30 s ... up to 2 minutes), and its kick when
// a leaf node connects comes before the site's JetStream API is reachable
// across the new link, so a 60 s cut was taken up again some 50 s after
// the link returned; the same holds for the site's source of the hub's
// manifests. The site sees the link come back; when either source stays
// silent, it removes the source from its stream and adds it again. A source added to a stream that holds messages from it
// starts after the last of them (nats-server reads the stream's own
// Nats-Stream-Source headers), so nothing is taken twice and nothing is
// skipped.

// SourceActive returns how long ago the FLEET of js (the hub's or the
// site's) last heard from src's origin (-1: never, or not a source of it).
func SourceActive(ctx context.Context, js jetstream.JetStream, src *jetstream.StreamSource) (time.Duration, error) {
	s, err := js.Stream(ctx, events.Stream)
	if err != nil {
		return -1, fmt.Errorf("stream %s: %w", events.Stream, unavailable(err))
	}
	for _, si := range s.CachedInfo().Sources {
		x := &jetstream.StreamSource{Name: si.Name, External: si.External}
		if sameOrigin(x, src) {
			return si.Active, nil
		}
	}
	return -1, nil
}

// RestartSource removes src's origin from the sources of the FLEET of js
// and adds src again, so that its server sets the source up at once
// instead of at its next backoff.
func RestartSource(ctx context.Context, js jetstream.JetStream, src *jetstream.StreamSource) error {
	s, err := js.Stream(ctx, events.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", events.Stream, unavailable(err))
	}
	cfg := s.CachedInfo().Config
	cfg.Sources = slices.DeleteFunc(slices.Clone(cfg.Sources), func(x *jetstream.StreamSource) bool { return sameOrigin(x, src) })
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("restart a source of %s: %w", events.Stream, unavailable(err))
	}
	return EnsureHubSource(ctx, js, src)
}
