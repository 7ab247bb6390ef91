package events

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	// AppendManifests stores the manifests (at most ManyBatch) all or none:
	// none if any device's manifest subject is no longer at its expected
	// sequence (a *ConflictError). It returns each manifest's sequence.
	AppendManifests(ctx context.Context, ms []ManifestAppend) ([]uint64, error)
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
// appended ManyBatch at a time in one atomic batch (and the last manifests
// read a batch at a time), where Apply costs a read and a durable write a
// device: a rollout to 10,000 devices is ten batches instead of 10,000
// writes (fleet sim, BENCHMARKS.md). A batch that meets a conflict (another
// writer moved one of its devices) or a device whose last manifest message
// is bad is applied a device at a time with Apply; a batch whose outcome is
// unknown is checked against the log and sent again. On a Store that is not
// a ManifestBatcher it is Apply a device at a time. It returns what was
// applied, in item order, up to the first error.
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
	for attempt := 1; ; attempt++ {
		seqs, err := b.AppendManifests(ctx, ms)
		if err == nil {
			for i := range out {
				out[i].Seq = seqs[i]
			}
			return out, nil
		}
		if !errors.Is(err, ErrConflict) && !errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		// Stored after all (an attempt whose answer was lost), or not at
		// all: the batch is atomic, so it is every manifest or none (part of
		// it only while the server is still committing it: read again).
		stored := 0
		for read := 0; read < 5; read++ {
			now, _, rerr := b.LastManifests(ctx, devs)
			if rerr != nil {
				return nil, fmt.Errorf("%w (and reading the manifests back failed: %v)", err, rerr)
			}
			stored = 0
			for i := range ms {
				if st, ok := now[ms[i].Event.Device]; ok && st.ID == ms[i].Event.ID {
					out[i].Seq = st.Seq
					stored++
				}
			}
			if stored == 0 || stored == len(ms) {
				break
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		switch {
		case stored == len(ms):
			return out, nil
		case stored > 0:
			return nil, fmt.Errorf("apply many: %d of %d manifests of an atomic batch are on the log: %w", stored, len(ms), err)
		case errors.Is(err, ErrConflict):
			return applyEach(ctx, s, clock, items, actor, signer) // another writer moved a device
		case attempt >= applyAttempts:
			return nil, fmt.Errorf("apply many: %d manifests sent %d times, none on the log: %w", len(ms), attempt, err)
		}
	}
}
