package events

import (
	"context"
	"errors"
	"fmt"
	"time"
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
	// Already is set by ApplyOnce when the last generation already held
	// this manifest from this actor: nothing was written, Seq, Generation
	// and Event are that generation's.
	Already bool
}

// OutcomeUnknownError is an apply whose manifest was sent but whose
// acknowledgement never came (the server died or the link dropped between
// storing and answering), also after retries with the same event id: the
// manifest may or may not be on the log. It wraps ErrUnavailable.
type OutcomeUnknownError struct {
	Device     string
	Generation int64
	ID         string // the event id every attempt carried (Nats-Msg-Id)
	Attempts   int
	Err        error // the last attempt's error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("manifest for %s (generation %d, event %s) was sent %d times but the log never acknowledged it: "+
		"it may be stored. Check with 'fleet get device %s' (or 'fleet replay --device %s --type ManifestApplied'); "+
		"re-running the same 'fleet apply' is safe: a manifest already applied by you is found and not written again: %v",
		e.Device, e.Generation, e.ID, e.Attempts, e.Device, e.Device, e.Err)
}

func (e *OutcomeUnknownError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Retries of a manifest append whose outcome is unknown. Each attempt
// carries the same event id, so the stream stores it once (the id is the
// dedup key within the stream's duplicate window).
const (
	applyAttempts       = 3
	applyAttemptTimeout = 4 * time.Second
)

// ApplyOnce is Apply made safe to re-run: if the device's last generation
// already holds exactly m from actor (the same digest, and the same
// signature or both unsigned), nothing is written and the result is that
// generation with Already set. A re-run after an OutcomeUnknownError thus
// writes the manifest at most once, also after the dedup window.
func ApplyOnce(ctx context.Context, s Store, clock *Clock, device string, m Manifest, actor string, signer Signer) (Applied, error) {
	return ApplyOnceAbove(ctx, s, clock, device, m, actor, signer, 0)
}

// ApplyOnceAbove is ApplyOnce with ApplyAbove's generation floor.
func ApplyOnceAbove(ctx context.Context, s Store, clock *Clock, device string, m Manifest, actor string, signer Signer, floor int64) (Applied, error) {
	if err := CheckID("device", device); err != nil {
		return Applied{}, err
	}
	if err := m.Validate(); err != nil {
		return Applied{}, err
	}
	last, err := s.LastManifest(ctx, device)
	// Only the generation the device may run counts as done: with a floor
	// above the log's last manifest (the log lost its newest manifests), the
	// device runs a later one, so the same manifest is a new generation.
	if err == nil && last.Actor == actor && last.Generation >= floor {
		if p, perr := last.Payload(); perr == nil {
			if ma, ok := p.(*ManifestApplied); ok && ma.Digest == m.Digest() && sameSignature(ma, device, last.Generation, signer) {
				return Applied{Seq: last.Seq, Generation: last.Generation, Event: last.Event, Already: true}, nil
			}
		}
	}
	return ApplyAbove(ctx, s, clock, device, m, actor, signer, floor)
}

// sameSignature reports whether ma, stored as generation gen, carries the
// signature signer makes for it now (ed25519 is deterministic), or both are
// unsigned.
func sameSignature(ma *ManifestApplied, device string, gen int64, signer Signer) bool {
	if signer == nil {
		return ma.Signature == ""
	}
	sig, kid, err := signer.Sign(SignedStatement(device, gen, ma.Digest))
	return err == nil && sig == ma.Signature && kid == ma.KeyID
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
	seq, err := appendManifestRetrying(ctx, s, e, expectedSeq)
	if err != nil {
		return Applied{}, err
	}
	return Applied{Seq: seq, Generation: e.Generation, Event: e}, nil
}

// appendManifestRetrying appends e expecting expectedSeq; an attempt that
// ends without an answer (ErrUnavailable: a timeout, a dropped link) is
// retried with the same event, which the stream's dedup stores once. A
// conflict on a retry is checked against the subject's last manifest: if it
// is e, the earlier attempt was stored and its sequence is returned. After
// the last attempt the error is an *OutcomeUnknownError.
func appendManifestRetrying(ctx context.Context, s Store, e Event, expectedSeq uint64) (uint64, error) {
	var err error
	attempt := 0
	for attempt < applyAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, &OutcomeUnknownError{Device: e.Device, Generation: e.Generation, ID: e.ID, Attempts: attempt, Err: err}
			case <-time.After(time.Duration(attempt) * 250 * time.Millisecond):
			}
		}
		attempt++
		actx, cancel := context.WithTimeout(ctx, applyAttemptTimeout)
		var seq uint64
		seq, err = s.AppendManifest(actx, e, expectedSeq)
		cancel()
		if err == nil {
			return seq, nil
		}
		if errors.Is(err, ErrConflict) {
			// An earlier attempt (this one's own retry inside the store, or
			// the attempt before) may have been stored with its ack lost:
			// then the conflict is with e itself.
			if seq, ok := storedAlready(ctx, s, e); ok {
				return seq, nil
			}
			return 0, err
		}
		if !errors.Is(err, ErrUnavailable) {
			return 0, err
		}
	}
	return 0, &OutcomeUnknownError{Device: e.Device, Generation: e.Generation, ID: e.ID, Attempts: attempt, Err: err}
}

// storedAlready reports whether the last manifest of e's device is e (and
// its sequence), asking a few times: it is asked after a conflict, when the
// log may be slow to answer.
func storedAlready(ctx context.Context, s Store, e Event) (uint64, bool) {
	for i := 0; i < 3 && ctx.Err() == nil; i++ {
		lctx, cancel := context.WithTimeout(ctx, applyAttemptTimeout)
		last, err := s.LastManifest(lctx, e.Device)
		cancel()
		switch {
		case err == nil:
			return last.Seq, last.ID == e.ID
		case errors.Is(err, ErrNotFound):
			return 0, false
		}
	}
	return 0, false
}
