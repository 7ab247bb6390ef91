package events

import (
	"context"
	"errors"
	"fmt"
)

// Signer signs a manifest's SignedStatement; it returns the signature and the key id.
type Signer interface {
	Sign(statement []byte) (signature, keyID string, err error)
}

// Applied is the result of Apply.
type Applied struct {
	Seq        uint64
	Generation int64
	Event      Event
}

// Apply appends m as the device's next generation: it reads the last manifest
// (its sequence and generation) and appends generation+1 expecting that
// sequence, so of two operators racing one wins and the other gets a
// *ConflictError. m must already be valid (ParseManifest); it is validated
// again here so no caller can skip it. signer may be nil. If the subject's
// last message is not a valid event, the manifest is written after it as the
// generation after the last good one.
func Apply(ctx context.Context, s Store, clock *Clock, device string, m Manifest, actor string, signer Signer) (Applied, error) {
	return ApplyAbove(ctx, s, clock, device, m, actor, signer, 0)
}

// ApplyAbove is Apply with a generation floor: the new generation is
// max(the log's last generation, floor)+1. floor is the highest generation
// known elsewhere (the read models, the agent's heartbeat), so that a log
// that lost its last manifests (a damaged store) never has a generation
// reused: an agent that already applied generation N would take a second
// generation N for the one it has.
func ApplyAbove(ctx context.Context, s Store, clock *Clock, device string, m Manifest, actor string, signer Signer, floor int64) (Applied, error) {
	if err := CheckID("device", device); err != nil {
		return Applied{}, err
	}
	if err := m.Validate(); err != nil {
		return Applied{}, err
	}
	var expected uint64
	var gen int64
	last, err := s.LastManifest(ctx, device)
	var bad *BadMessage
	switch {
	case err == nil:
		expected, gen = last.Seq, last.Generation
	case errors.Is(err, ErrNotFound):
	case errors.As(err, &bad):
		// The subject's last message is not a manifest (agents and read
		// models skip it): write after it, as the generation after the
		// last good manifest, so that one bad message cannot block the
		// device's desired state for good.
		if expected, gen, err = afterBadManifest(ctx, s, device, bad.Seq); err != nil {
			return Applied{}, err
		}
	default:
		return Applied{}, err
	}
	return ApplyAfter(ctx, s, clock, device, m, actor, signer, expected, max(gen, floor))
}

// afterBadManifest returns the sequence of the bad message last on device's
// manifest subject and the highest generation of the good manifests before it.
func afterBadManifest(ctx context.Context, s Store, device string, badSeq uint64) (uint64, int64, error) {
	var gen int64
	for st, err := range s.Read(ctx, Filter{Device: device, Types: []string{TypeManifestApplied}, ToSeq: badSeq}) {
		var bm *BadMessage
		switch {
		case errors.As(err, &bm):
			continue
		case err != nil:
			return 0, 0, fmt.Errorf("manifests of %s: %w", device, err)
		}
		gen = max(gen, st.Generation)
	}
	return badSeq, gen, nil
}

// ApplyAfter appends m as generation prevGen+1, expecting the manifest
// subject's last sequence to be expectedSeq. Apply is ApplyAfter with what it
// just read; tests use it to force a race.
func ApplyAfter(ctx context.Context, s Store, clock *Clock, device string, m Manifest, actor string, signer Signer, expectedSeq uint64, prevGen int64) (Applied, error) {
	p := ManifestApplied{Manifest: m, Digest: m.Digest()}
	if signer != nil {
		sig, kid, err := signer.Sign(SignedStatement(device, prevGen+1, p.Digest))
		if err != nil {
			return Applied{}, fmt.Errorf("sign manifest for %s: %w", device, err)
		}
		p.Signature, p.KeyID = sig, kid
	}
	e, err := New(device, "", prevGen+1, actor, p)
	if err != nil {
		return Applied{}, err
	}
	clock.Stamp(&e)
	e.Correlation = e.ID
	seq, err := s.AppendManifest(ctx, e, expectedSeq)
	if err != nil {
		return Applied{}, err
	}
	return Applied{Seq: seq, Generation: e.Generation, Event: e}, nil
}
