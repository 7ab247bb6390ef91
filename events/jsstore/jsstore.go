// Package jsstore is the JetStream implementation of events.Store: one stream,
// FLEET, file storage, every event a message whose Nats-Msg-Id is its id.
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

	"github.com/fleet-dev/fleet/events"
)

// errBatchHasDuplicate is the server's JSAtomicPublishContainsDuplicateMessageErr.
const errBatchHasDuplicate = 10201

// MaxBatch is the most events one atomic batch may carry (a server limit).
const MaxBatch = 1000

// DefaultDuplicateWindow is how long the stream remembers event ids to drop
// a retried append. An agent drains its outbox within this window after an
// ack is lost; past it, readers still see each id once because the agent
// keeps ids stable and projections deduplicate by id.
const DefaultDuplicateWindow = 10 * time.Minute

// The smallest retention limits Config takes (fleet server refuses less):
// an hour of log, and room for a few of the largest events.
const (
	MinRetentionAge   = time.Hour
	MinRetentionBytes = 8 << 20
)

// Config sets up the stream.
type Config struct {
	Replicas        int           // 1 on one server, 3 on a cluster
	DuplicateWindow time.Duration // default DefaultDuplicateWindow
	// Retention of the audit log; zero keeps every event for ever (the
	// default). Past either limit the oldest events are removed: export
	// them first ('fleet export'). The duplicate window is cut to MaxAge
	// when it is shorter.
	MaxAge   time.Duration // events older than this (by stream time) are removed
	MaxBytes int64         // the stream keeps at most this many bytes
}

// StreamConfig returns the FLEET stream configuration fleet wants.
func StreamConfig(c Config) jetstream.StreamConfig {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxAge > 0 && c.DuplicateWindow > c.MaxAge {
		c.DuplicateWindow = c.MaxAge // the server refuses a window longer than MaxAge
	}
	maxBytes := c.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:               events.Stream,
		Description:        "fleet: every manifest change, reconcile attempt and status transition",
		Subjects:           []string{events.AllSubjects},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		Replicas:           c.Replicas,
		Duplicates:         c.DuplicateWindow,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		DenyDelete:         true,
		DenyPurge:          true,
		MaxMsgSize:         1 << 20,
		MaxAge:             max(c.MaxAge, 0),
		MaxBytes:           maxBytes,
	}
}

// Store is the JetStream log. Safe for concurrent use.
type Store struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	beats  heartbeatPut // devicelog.go
}

// Open connects the store to the stream, creating it or bringing its
// configuration up to date. Calling it again with the same config changes
// nothing (the stream's config is compared first and updated only on a
// difference). Use Attach to use an existing stream without managing it.
func Open(ctx context.Context, js jetstream.JetStream, c Config) (*Store, error) {
	want := StreamConfig(c)
	s, err := streamRetrying(ctx, js)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		s, err = createStreamRetrying(ctx, js, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", events.Stream, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open stream %s: %w", events.Stream, unavailable(err))
	default:
		if !sameConfig(s.CachedInfo().Config, want) {
			keepSources(&want, s.CachedInfo().Config)
			s, err = updateStreamRetrying(ctx, js, want)
			if err != nil {
				return nil, fmt.Errorf("update stream %s: %w", events.Stream, err)
			}
		}
	}
	return &Store{js: js, stream: s}, nil
}

// Attach uses the existing stream without creating or changing it (for
// clients with least privilege, such as agents).
func Attach(ctx context.Context, js jetstream.JetStream) (*Store, error) {
	s, err := streamRetrying(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", events.Stream, unavailable(err))
	}
	return &Store{js: js, stream: s}, nil
}

// sameConfig compares the fields fleet manages.
func sameConfig(have, want jetstream.StreamConfig) bool {
	return strings.Join(have.Subjects, ",") == strings.Join(want.Subjects, ",") &&
		have.Storage == want.Storage && have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates && have.AllowDirect == want.AllowDirect &&
		have.AllowAtomicPublish == want.AllowAtomicPublish && have.DenyDelete == want.DenyDelete &&
		have.DenyPurge == want.DenyPurge && have.MaxMsgSize == want.MaxMsgSize &&
		have.Description == want.Description && have.Retention == want.Retention && have.Discard == want.Discard &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes
}

// JetStream returns the underlying context.
func (s *Store) JetStream() jetstream.JetStream { return s.js }

// Msg builds the NATS message of an event: its subject, its JSON, and its id
// as Nats-Msg-Id.
func Msg(e events.Event) (*nats.Msg, error) {
	subj, err := events.SubjectFor(e)
	if err != nil {
		return nil, err
	}
	data, err := events.Encode(e)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subj)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, e.ID)
	return m, nil
}

// Append implements events.Store.
func (s *Store) Append(ctx context.Context, e events.Event) (uint64, bool, error) {
	m, err := Msg(e)
	if err != nil {
		return 0, false, err
	}
	ack, err := s.publish(ctx, func() *nats.Msg { return copyMsg(m) })
	if err != nil {
		return 0, false, fmt.Errorf("append %s %s: %w", e.Type, e.ID, unavailable(err))
	}
	return ack.Sequence, ack.Duplicate, nil
}

// AppendBatch implements events.Store with JetStream atomic batches of at
// most MaxBatch events; a longer slice is several batches, each atomic.
func (s *Store) AppendBatch(ctx context.Context, evs []events.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), MaxBatch)
		msgs := make([]*nats.Msg, 0, n)
		for _, e := range evs[:n] {
			m, err := Msg(e)
			if err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
		if len(msgs) == 1 {
			if _, err := s.publish(ctx, func() *nats.Msg { return copyMsg(msgs[0]) }); err != nil {
				return fmt.Errorf("append batch of 1: %w", unavailable(err))
			}
		} else if err := s.publishBatch(ctx, msgs); err != nil {
			var apiErr *jetstream.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode != errBatchHasDuplicate {
				return fmt.Errorf("append batch of %d: %w", len(msgs), unavailable(err))
			}
			// Some of these events are stored already (a retry after a lost
			// ack): the server refuses the whole batch, so append them one by
			// one, in order, and let the stream drop the ones it has.
			for _, e := range evs[:n] {
				m, _ := Msg(e) // fresh: the batch publisher set batch headers on msgs
				if _, err := s.publish(ctx, func() *nats.Msg { return copyMsg(m) }); err != nil {
					return fmt.Errorf("append batch retry of %d: %w", len(msgs), unavailable(err))
				}
			}
		}
		evs = evs[n:]
	}
	return nil
}

// AppendManifest implements events.Store with a per-subject expected last
// sequence (Nats-Expected-Last-Subject-Sequence).
func (s *Store) AppendManifest(ctx context.Context, e events.Event, expectedLastSeq uint64) (uint64, error) {
	if e.Type != events.TypeManifestApplied {
		return 0, fmt.Errorf("%w: append manifest: event type %q: must be %s", events.ErrInvalid, e.Type, events.TypeManifestApplied)
	}
	return s.appendExpect(ctx, e, expectedLastSeq, "append manifest "+e.Device,
		func() (events.Stored, error) { return s.LastManifest(ctx, e.Device) })
}

// actualFrom reads N from "wrong last sequence: N".
func actualFrom(desc string) uint64 {
	i := strings.LastIndex(desc, ":")
	if i < 0 {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(desc[i+1:]), 10, 64)
	return n
}

// LastManifest implements events.Store with a get of the last message on
// the device's manifest subject answered by the stream leader (never a
// follower that may be behind: see leaderget.go), so that what it returns
// is a sound expectation for AppendManifest. On a stream of one replica
// that is a direct get (which a device's credentials allow).
func (s *Store) LastManifest(ctx context.Context, device string) (events.Stored, error) {
	if err := events.CheckID("device", device); err != nil {
		return events.Stored{}, err
	}
	var raw *jetstream.RawStreamMsg
	var err error
	if s.replicated() {
		raw, err = s.lastFromLeader(ctx, events.ManifestSubject(device))
	} else { // the one replica is the leader: a direct get is as good, and a device may make it
		raw, err = s.stream.GetLastMsgForSubject(ctx, events.ManifestSubject(device))
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return events.Stored{}, fmt.Errorf("manifest of %s: %w", device, events.ErrNotFound)
		}
		return events.Stored{}, fmt.Errorf("manifest of %s: %w", device, unavailable(err))
	}
	return FromRaw(raw.Subject, raw.Sequence, raw.Time, raw.Data)
}

// FromRaw decodes a stored message; an invalid one is a *events.BadMessage.
func FromRaw(subject string, seq uint64, t time.Time, data []byte) (events.Stored, error) {
	return fromRaw(subject, seq, t, data, events.DecodeStored)
}

// FromRawOwned is FromRaw for a message body handed over to the event
// (events.DecodeStoredOwned: Data may be a part of data, which must not
// change afterwards).
func FromRawOwned(subject string, seq uint64, t time.Time, data []byte) (events.Stored, error) {
	return fromRaw(subject, seq, t, data, events.DecodeStoredOwned)
}

func fromRaw(subject string, seq uint64, t time.Time, data []byte, decode func([]byte) (events.Stored, error)) (events.Stored, error) {
	st, err := decode(data) // keeps the payload, decoded once
	if err != nil {
		return events.Stored{}, &events.BadMessage{Seq: seq, Subject: subject, Err: err}
	}
	if !onSubject(st.Event, subject) {
		return events.Stored{}, &events.BadMessage{Seq: seq, Subject: subject,
			Err: fmt.Errorf("%w: event %s of type %s does not belong on subject %s", events.ErrInvalid, st.ID, st.Type, subject)}
	}
	st.Seq, st.StreamTime, st.Subject = seq, t, subject
	return st, nil
}

// onSubject reports whether subject is events.SubjectFor(e), without
// building it (every message read is checked).
func onSubject(e events.Event, subject string) bool {
	var kind string
	perResource := true
	switch e.Type {
	case events.TypeManifestApplied:
		kind, perResource = events.KindManifest, false
	case events.TypeDeviceRegistered, events.TypeDeviceDeregistered, events.TypeManifestRejected, events.TypeClockSkewDetected:
		kind, perResource = events.KindLifecycle, false
	case events.TypeDeviceLabeled:
		kind, perResource = events.KindLabels, false
	case events.TypeDeviceTargeted:
		kind = events.KindRollout
	case events.TypeReconcileAttempted:
		kind = events.KindAttempt
	case events.TypeStatusChanged:
		kind = events.KindStatus
	case events.TypeDriftDetected:
		kind = events.KindDrift
	default:
		if events.IsRolloutDecision(e.Type) {
			return e.Device == "" && subject == events.RolloutSubject(e.Resource)
		}
		return false
	}
	rest, ok := strings.CutPrefix(subject, events.Prefix+".")
	if !ok {
		return false
	}
	if rest, ok = strings.CutPrefix(rest, e.Device); !ok || len(rest) == 0 || rest[0] != '.' {
		return false
	}
	if rest, ok = strings.CutPrefix(rest[1:], kind); !ok {
		return false
	}
	if !perResource {
		return rest == ""
	}
	return len(rest) > 0 && rest[0] == '.' && rest[1:] == e.Resource
}

// FromMsg decodes a message delivered by a consumer.
func FromMsg(m jetstream.Msg) (events.Stored, error) {
	md, err := m.Metadata()
	if err != nil {
		return events.Stored{}, fmt.Errorf("message metadata: %w", err)
	}
	return FromRaw(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Data())
}

// LastSeq returns the stream's last sequence.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return 0, unavailable(err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// unavailable marks connection-level failures as events.ErrUnavailable so
// callers (the agent's outbox) know to keep the events and retry.
func unavailable(err error) error {
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrReconnectBufExceeded),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, jetstream.ErrNoHeartbeat):
		return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errInsufficientResources, errStorageResourcesExceeded, errStoreFailed, jetstream.JSErrCodeJetStreamNotEnabled:
			// a full disk or JetStream disabled: nothing is wrong with the
			// event; the writer keeps it and retries later (never parks it)
			return fmt.Errorf("%w: the log cannot store now (its disk is full or JetStream is disabled; see the server's /healthz): %w",
				events.ErrUnavailable, err)
		}
	}
	return err
}

// JetStream's answers for a store that cannot take more now.
const (
	errInsufficientResources    jetstream.ErrorCode = 10023
	errStorageResourcesExceeded jetstream.ErrorCode = 10047
	errStoreFailed              jetstream.ErrorCode = 10077
)

var _ events.Store = (*Store)(nil)
