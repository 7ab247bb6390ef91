package events

import (
	"context"
	"errors"
	"fmt"
)

// ManifestAppend is one manifest of an AppendManifests batch: the event and
// the sequence its device's manifest subject must still have (0: none).
type ManifestAppend struct {
	Event       Event
	ExpectedSeq uint64
}

// ManifestBatcher is a Store that appends many devices' manifests at once
// (jsstore: one atomic batch with a compare-and-set per device, and the
// last manifests of many devices a request).
type ManifestBatcher interface {
	// LastManifests returns the newest manifest of each device that has one;
	// a device whose last manifest message does not decode is in bad.
	LastManifests(ctx context.Context, devices []string) (map[string]Stored, map[string]*BadMessage, error)
	// AppendManifests stores each manifest (at most ManyBatch) if its
	// device's manifest subject is still at its expected sequence (else a
	// *ConflictError for that one): one result a manifest, in order.
	AppendManifests(ctx context.Context, ms []ManifestAppend) []ManifestResult
}

// ManifestResult is one manifest's outcome in AppendManifests: its
// sequence, or why it is not known to be stored.
type ManifestResult struct {
	Seq uint64
	Err error
}

// ManyBatch is how many manifests ApplyMany appends in one batch (the
// server takes at most 1,000 messages an atomic batch).
const ManyBatch = 1000

// ApplyItem is one device's manifest for ApplyMany.
type ApplyItem struct {
	Device   string
	Manifest Manifest
}

// ApplyMany is Apply for many devices: each item's manifest becomes its
// device's next generation, with the same compare-and-set as Apply, but
// the last manifests read ManyBatch a request and the manifests sent
// ManyBatch at a time pipelined, where Apply costs a read and a write
// round trip a device (a rollout to 10,000 devices took 137 s that way at
// 73 a second, fleet sim, BENCHMARKS.md). A device another writer moved in
// between, or whose last manifest message is bad, is applied again on its
// own with Apply (its generation follows the other writer's); one whose
// outcome is unknown is sent again with the same event (the stream's
// dedup stores it once). On a Store that is not a ManifestBatcher it is
// Apply a device at a time. It returns what was applied, in item order, up
// to the first error.
func ApplyMany(ctx context.Context, s Store, clock *Clock, items []ApplyItem, actor string, signer Signer) ([]Applied, error) {
	out := make([]Applied, 0, len(items))
	b, ok := s.(ManifestBatcher)
	for len(items) > 0 {
		n := min(len(items), ManyBatch)
		chunk := items[:n]
		items = items[n:]
		var res []Applied
		var err error
		if ok {
			res, err = applyBatch(ctx, s, b, clock, chunk, actor, signer)
		} else {
			res, err = applyEach(ctx, s, clock, chunk, actor, signer)
		}
		out = append(out, res...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func applyEach(ctx context.Context, s Store, clock *Clock, items []ApplyItem, actor string, signer Signer) ([]Applied, error) {
	out := make([]Applied, 0, len(items))
	for _, it := range items {
		a, err := Apply(ctx, s, clock, it.Device, it.Manifest, actor, signer)
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

func applyBatch(ctx context.Context, s Store, b ManifestBatcher, clock *Clock, items []ApplyItem, actor string, signer Signer) ([]Applied, error) {
	devs := make([]string, len(items))
	seen := map[string]bool{}
	for i, it := range items {
		if err := CheckID("device", it.Device); err != nil {
			return nil, err
		}
		if seen[it.Device] {
			return nil, fmt.Errorf("%w: device %q: twice in one ApplyMany", ErrInvalid, it.Device)
		}
		seen[it.Device] = true
		if err := it.Manifest.Validate(); err != nil {
			return nil, fmt.Errorf("manifest for %s: %w", it.Device, err)
		}
		devs[i] = it.Device
	}
	last, bad, err := b.LastManifests(ctx, devs)
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return applyEach(ctx, s, clock, items, actor, signer)
	}
	ms := make([]ManifestAppend, len(items))
	out := make([]Applied, len(items))
	for i, it := range items {
		l := last[it.Device]
		p := ManifestApplied{Manifest: it.Manifest, Digest: it.Manifest.Digest()}
		if signer != nil {
			sig, kid, err := signer.Sign(SignedStatement(it.Device, l.Generation+1, p.Digest))
			if err != nil {
				return nil, fmt.Errorf("sign manifest for %s: %w", it.Device, err)
			}
			p.Signature, p.KeyID = sig, kid
		}
		e, err := New(it.Device, "", l.Generation+1, actor, p)
		if err != nil {
			return nil, err
		}
		clock.Stamp(&e)
		e.Correlation = e.ID
		ms[i] = ManifestAppend{Event: e, ExpectedSeq: l.Seq}
		out[i] = Applied{Generation: e.Generation, Event: e}
	}
	for i, r := range b.AppendManifests(ctx, ms) {
		if r.Err == nil {
			out[i].Seq = r.Seq
			continue
		}
		switch {
		case errors.Is(r.Err, ErrConflict):
			// Another writer, or an answer lost inside the store whose
			// message was stored: appendManifestRetrying tells which.
			if seq, ok := storedAlready(ctx, s, ms[i].Event); ok {
				out[i].Seq = seq
				continue
			}
			a, err := Apply(ctx, s, clock, items[i].Device, items[i].Manifest, actor, signer)
			if err != nil {
				return out[:i], err
			}
			out[i] = a
		case errors.Is(r.Err, ErrUnavailable):
			seq, err := appendManifestRetrying(ctx, s, ms[i].Event, ms[i].ExpectedSeq)
			if errors.Is(err, ErrConflict) {
				a, aerr := Apply(ctx, s, clock, items[i].Device, items[i].Manifest, actor, signer)
				if aerr != nil {
					return out[:i], aerr
				}
				out[i] = a
				continue
			}
			if err != nil {
				return out[:i], err
			}
			out[i].Seq = seq
		default:
			return out[:i], r.Err
		}
	}
	return out, nil
}
