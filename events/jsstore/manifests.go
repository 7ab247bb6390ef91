package jsstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
)

// lastManifestsPerCall is the most subjects one GetLastMsgsFor asks about
// (the server answers at most 1,024).
const lastManifestsPerCall = 1000

// manifestsAttempt is how long one attempt of AppendManifests waits for
// the batch's answer.
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

// AppendManifests implements events.ManifestBatcher: the manifests in one
// atomic batch (at most MaxBatch), each with its own per-subject
// compare-and-set (Nats-Expected-Last-Subject-Sequence), so that the batch
// is stored only if no device's manifest subject moved since it was read:
// all or none. A moved subject is a *events.ConflictError for the whole
// batch (the server does not say which). It returns each manifest's
// sequence (a batch is stored contiguously).
func (s *Store) AppendManifests(ctx context.Context, ms []events.ManifestAppend) ([]uint64, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	if len(ms) > MaxBatch {
		return nil, fmt.Errorf("%w: append manifests: %d: must be at most %d a batch", events.ErrInvalid, len(ms), MaxBatch)
	}
	msgs := make([]*nats.Msg, len(ms))
	for i, a := range ms {
		if a.Event.Type != events.TypeManifestApplied {
			return nil, fmt.Errorf("%w: append manifests: event %d type %q: must be %s", events.ErrInvalid, i, a.Event.Type, events.TypeManifestApplied)
		}
		m, err := Msg(a.Event)
		if err != nil {
			return nil, err
		}
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(a.ExpectedSeq, 10))
		msgs[i] = m
	}
	// A batch of a thousand compare-and-sets behind a busy stream takes
	// longer than one event: an attempt waits up to manifestsAttempt.
	ack, err := retryingWithin(ctx, manifestsAttempt, func(ctx context.Context) (*jetstreamext.BatchAck, error) {
		fresh := make([]*nats.Msg, len(msgs))
		for i, m := range msgs {
			c := copyMsg(m)
			c.Header.Set(jetstream.ExpectedLastSubjSeqHeader, m.Header.Get(jetstream.ExpectedLastSubjSeqHeader))
			fresh[i] = c
		}
		return jetstreamext.PublishMsgBatch(ctx, s.js, fresh)
	})
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return nil, &events.ConflictError{Subject: fmt.Sprintf("one of %d manifest subjects", len(ms)), Actual: actualFrom(apiErr.Description)}
		}
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errBatchHasDuplicate {
			// An attempt whose answer did not come in time was stored after
			// all: the outcome is for the caller to read back.
			return nil, fmt.Errorf("append %d manifests: %w: sent again after no answer, and found stored: %w", len(ms), events.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("append %d manifests: %w", len(ms), unavailable(err))
	}
	seqs := make([]uint64, len(ms))
	first := ack.Sequence - uint64(len(ms)) + 1
	for i := range seqs {
		seqs[i] = first + uint64(i)
	}
	return seqs, nil
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
