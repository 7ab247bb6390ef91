package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
)

// lastManifestsPerCall is the most subjects one GetLastMsgsFor asks about
// (the server answers at most 1,024).
const lastManifestsPerCall = 1000

// manifestsAttempt is how long AppendManifests waits for the answers.
const manifestsAttempt = 15 * time.Second

// LastManifests implements events.ManifestBatcher: the newest manifest of
// each device, several devices a request (GetLastMsgsFor on the stream's
// direct get). A device without one is absent from the map; a device whose
// last message does not decode maps to nothing and is in bad. On a
// replicated stream it asks the leader, a device at a time (a direct get
// may be answered by a follower that is behind).
func (s *Store) LastManifests(ctx context.Context, devices []string) (map[string]events.Stored, map[string]*events.BadMessage, error) {
	out := map[string]events.Stored{}
	bad := map[string]*events.BadMessage{}
	for _, d := range devices {
		if err := events.CheckID("device", d); err != nil {
			return nil, nil, err
		}
	}
	if s.replicated() {
		for _, d := range devices {
			st, err := s.LastManifest(ctx, d)
			var bm *events.BadMessage
			switch {
			case err == nil:
				out[d] = st
			case errors.As(err, &bm):
				bad[d] = bm
			case !errors.Is(err, events.ErrNotFound):
				return nil, nil, err
			}
		}
		return out, bad, nil
	}
	for len(devices) > 0 {
		n := min(len(devices), lastManifestsPerCall)
		subjects := make([]string, n)
		for i, d := range devices[:n] {
			subjects[i] = events.ManifestSubject(d)
		}
		devices = devices[n:]
		msgs, err := jetstreamext.GetLastMsgsFor(ctx, s.js, events.Stream, subjects)
		if err != nil {
			return nil, nil, fmt.Errorf("last manifests: %w", unavailable(err))
		}
		for raw, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return nil, nil, fmt.Errorf("last manifests: %w", unavailable(err))
			}
			st, err := FromRaw(raw.Subject, raw.Sequence, raw.Time, raw.Data)
			var bm *events.BadMessage
			switch {
			case errors.As(err, &bm):
				if dev, ok := deviceOfManifestSubject(raw.Subject); ok {
					bad[dev] = bm
				}
			case err != nil:
				return nil, nil, err
			default:
				out[st.Device] = st
			}
		}
	}
	return out, bad, nil
}

// AppendManifests implements events.ManifestBatcher: the manifests sent
// pipelined (asynchronous publishes, all in flight at once), each with its
// own per-subject compare-and-set, so a thousand cost about what one
// round trip and the stream's ingest of a thousand messages cost, not a
// thousand round trips. Each manifest stands alone: one whose subject
// moved is a *events.ConflictError for it only. Not an atomic batch: the
// server allows only so many atomic batches in flight on a stream, and in
// a rollout the agents' outbox batches take them (a manifest batch waiting
// for a slot behind thousands of agents timed out, fleet sim).
func (s *Store) AppendManifests(ctx context.Context, ms []events.ManifestAppend) []events.ManifestResult {
	out := make([]events.ManifestResult, len(ms))
	futures := make([]jetstream.PubAckFuture, len(ms))
	for i, a := range ms {
		if a.Event.Type != events.TypeManifestApplied {
			out[i].Err = fmt.Errorf("%w: append manifests: event %d type %q: must be %s", events.ErrInvalid, i, a.Event.Type, events.TypeManifestApplied)
			continue
		}
		m, err := Msg(a.Event)
		if err != nil {
			out[i].Err = err
			continue
		}
		if futures[i], err = s.js.PublishMsgAsync(m, jetstream.WithExpectLastSequencePerSubject(a.ExpectedSeq)); err != nil {
			out[i].Err = fmt.Errorf("append manifest %s: %w", a.Event.Device, unavailable(err))
		}
	}
	wait, cancel := context.WithTimeout(ctx, manifestsAttempt)
	defer cancel()
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case ack := <-f.Ok():
			out[i].Seq = ack.Sequence
		case err := <-f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				out[i].Err = &events.ConflictError{Subject: events.ManifestSubject(ms[i].Event.Device), Expected: ms[i].ExpectedSeq, Actual: actualFrom(apiErr.Description)}
			} else {
				out[i].Err = fmt.Errorf("append manifest %s: %w", ms[i].Event.Device, unavailable(err))
			}
		case <-wait.Done():
			out[i].Err = fmt.Errorf("append manifest %s: %w: no answer in %s", ms[i].Event.Device, events.ErrUnavailable, manifestsAttempt)
		}
	}
	return out
}

// deviceOfManifestSubject is the device of a manifest subject.
func deviceOfManifestSubject(subj string) (string, bool) {
	rest, ok := strings.CutPrefix(subj, events.Prefix+".")
	if !ok {
		return "", false
	}
	dev, ok := strings.CutSuffix(rest, "."+events.KindManifest)
	return dev, ok && dev != "" && !strings.Contains(dev, ".")
}
