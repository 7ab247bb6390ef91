package jsstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// Compare-and-set on any subject of the log, for the control plane's
// subjects beside the manifest (a device's labels, a rollout's decisions):
// the same rule as AppendManifest, for any event type.

// LastOnSubject returns the last event on subject, as the stream leader has
// it (see LastManifest): events.ErrNotFound when the subject is empty, a
// *events.BadMessage (with its sequence) when the last message there is not
// a valid event.
func (s *Store) LastOnSubject(ctx context.Context, subject string) (events.Stored, error) {
	var raw *jetstream.RawStreamMsg
	var err error
	if s.replicated() {
		raw, err = s.lastFromLeader(ctx, subject)
	} else {
		raw, err = s.stream.GetLastMsgForSubject(ctx, subject)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return events.Stored{}, fmt.Errorf("last event on %s: %w", subject, events.ErrNotFound)
		}
		return events.Stored{}, fmt.Errorf("last event on %s: %w", subject, unavailable(err))
	}
	return FromRaw(raw.Subject, raw.Sequence, raw.Time, raw.Data)
}

// LastSeqOn returns the sequence of the last message on subject (0: none),
// valid event or not: what AppendExpect expects.
func (s *Store) LastSeqOn(ctx context.Context, subject string) (uint64, error) {
	st, err := s.LastOnSubject(ctx, subject)
	var bad *events.BadMessage
	switch {
	case err == nil:
		return st.Seq, nil
	case errors.Is(err, events.ErrNotFound):
		return 0, nil
	case errors.As(err, &bad):
		return bad.Seq, nil
	}
	return 0, err
}

// AppendExpect appends e on its subject (events.SubjectFor) only if the
// subject's last sequence is still expectedLastSeq (0: nothing there yet).
// A lost race is a *events.ConflictError (errors.Is events.ErrConflict).
// An attempt whose acknowledgement was lost is sent again with the same id;
// if the first copy was stored, its sequence is returned and nothing is
// stored twice.
func (s *Store) AppendExpect(ctx context.Context, e events.Event, expectedLastSeq uint64) (uint64, error) {
	subj, err := events.SubjectFor(e)
	if err != nil {
		return 0, err
	}
	return s.appendExpect(ctx, e, expectedLastSeq, "append "+string(e.Type)+" on "+subj,
		func() (events.Stored, error) { return s.LastOnSubject(ctx, subj) })
}

// appendExpect publishes e with an expected last sequence on its subject.
// On a wrong-last-sequence answer it reads the subject's last event (last):
// if that is e itself, an attempt whose acknowledgement was lost stored it
// and its sequence is returned; otherwise the conflict names the winner's.
func (s *Store) appendExpect(ctx context.Context, e events.Event, expectedLastSeq uint64, what string, last func() (events.Stored, error)) (uint64, error) {
	m, err := Msg(e)
	if err != nil {
		return 0, err
	}
	// Sent again (same Nats-Msg-Id) while the cluster cannot take it or
	// has an earlier write to the subject in flight; a copy of it that was
	// stored after all comes back as a duplicate ack with its sequence.
	ack, err := s.publish(ctx, func() *nats.Msg { return copyMsg(m) }, jetstream.WithExpectLastSequencePerSubject(expectedLastSeq))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			ce := &events.ConflictError{Subject: m.Subject, Expected: expectedLastSeq, Actual: actualFrom(apiErr.Description)}
			if l, lerr := last(); lerr == nil {
				if l.ID == e.ID {
					return l.Seq, nil // this very event, stored by an attempt whose ack was lost
				}
				ce.Actual = l.Seq
			}
			return 0, ce
		}
		return 0, fmt.Errorf("%s: %w", what, unavailable(err))
	}
	return ack.Sequence, nil
}
