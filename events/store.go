package events

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"
)

// Sentinels a caller acts on; adapters translate their own errors into these
// once, so callers need one errors.Is.
var (
	// ErrConflict: a compare-and-set append lost a race (see ConflictError).
	ErrConflict = errors.New("conflict")
	// ErrNotFound: nothing on the log matches (no manifest for a device yet).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: the log cannot be reached now; retry later.
	ErrUnavailable = errors.New("log unavailable")
)

// ConflictError says what a compare-and-set expected and what it found.
type ConflictError struct {
	Subject  string
	Expected uint64 // the last sequence the writer read
	Actual   uint64 // the last sequence on the subject when it wrote
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict on %s: expected last sequence %d, found %d: another writer appended first; read again and retry",
		e.Subject, e.Expected, e.Actual)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// Filter selects events when reading the log. Zero fields match everything.
type Filter struct {
	Device   string
	Resource string   // needs Device
	Types    []string // any of these types
	FromSeq  uint64   // first stream sequence to read (inclusive)
	ToSeq    uint64   // last stream sequence to read (inclusive); 0: up to the last when the read started
	Since    time.Time
	Until    time.Time // by event time (At), inclusive
	// SubjectFilters, if set, are the subjects read instead of Device's
	// and Resource's (e.g. a rollout's: RolloutSubject and
	// TargetedSubject("*", id)); the other fields still filter.
	SubjectFilters []string
}

// Subjects returns the subject filters that select f's device and resource.
func (f Filter) Subjects() []string {
	switch {
	case len(f.SubjectFilters) > 0:
		return f.SubjectFilters
	case f.Device == "":
		return []string{AllSubjects}
	case f.Resource == "":
		return []string{DeviceFilter(f.Device)}
	default:
		return []string{
			ResourceSubject(f.Device, KindAttempt, f.Resource),
			ResourceSubject(f.Device, KindStatus, f.Resource),
			ResourceSubject(f.Device, KindDrift, f.Resource),
		}
	}
}

// Match reports whether a stored event passes the filter's non-subject parts.
func (f Filter) Match(s Stored) bool {
	if f.Device != "" && s.Device != f.Device {
		return false
	}
	if f.Resource != "" && s.Resource != f.Resource {
		return false
	}
	if len(f.Types) > 0 {
		ok := false
		for _, t := range f.Types {
			if t == s.Type {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if !f.Since.IsZero() && s.At.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && s.At.After(f.Until) {
		return false
	}
	return true
}

// Store is the log's contract. Implementations: jsstore (JetStream, the real
// one). All methods are safe for concurrent use.
type Store interface {
	// Append stores one event. Appending an event whose ID is already stored
	// (within the dedup window) stores nothing and returns the first copy's
	// sequence with duplicate=true.
	Append(ctx context.Context, e Event) (seq uint64, duplicate bool, err error)
	// AppendBatch stores events atomically, in order: all or none. Events
	// already stored are not stored again: a batch that repeats stored events
	// (a retry after a lost ack) is appended event by event, each deduplicated.
	AppendBatch(ctx context.Context, evs []Event) error
	// AppendManifest appends a ManifestApplied event only if the last sequence
	// on the device's manifest subject is still expectedLastSeq (0: no manifest
	// yet). A lost race returns a *ConflictError (errors.Is ErrConflict).
	AppendManifest(ctx context.Context, e Event, expectedLastSeq uint64) (seq uint64, err error)
	// AppendEncoded is AppendBatch for events already encoded and checked by
	// their writer (EncodedOf): their bytes are stored as they are, in
	// order, in atomic batches; events already stored are not stored again.
	AppendEncoded(ctx context.Context, evs []Encoded) error
	// LastSeq returns the last sequence stored on the log (0: empty).
	LastSeq(ctx context.Context) (uint64, error)
	// LastManifest returns the device's newest ManifestApplied, or ErrNotFound.
	LastManifest(ctx context.Context, device string) (Stored, error)
	// Read yields the events that match f in log order, from the first match
	// to f.ToSeq (or the last sequence when Read was called). A message on the
	// log that does not decode is yielded as an error wrapping ErrInvalid
	// (a *BadMessage), and reading goes on; a message the log holds but
	// cannot deliver (a damaged store) is yielded as an *UnreadableError
	// (errors.Is ErrUnreadable), and reading goes on past it; any other
	// error ends the sequence.
	Read(ctx context.Context, f Filter) iter.Seq2[Stored, error]
	// Follow yields the events that match f in log order from stream
	// sequence f.FromSeq on (0 or 1: the start of the log), each with its
	// stream sequence and stream time, and then keeps yielding new ones as
	// they are stored, until ctx is done: then the sequence ends without an
	// error. f.ToSeq is ignored. A message that does not decode is yielded as
	// a *BadMessage and following goes on; an error the implementation
	// cannot recover from ends the sequence (wrapping ErrUnavailable when the
	// log cannot be reached), and the caller may follow again from the
	// sequence after the last event it took.
	Follow(ctx context.Context, f Filter) iter.Seq2[Stored, error]
	// Batches is Read (o.Follow false) or Follow (o.Follow true) a batch
	// at a time, for consumers that write what they fold in batches (the
	// read-side runtime: read models, the time-travel index). A batch is
	// whatever has been delivered and decoded by the time the caller takes
	// it, at most o.Max messages: a backlog comes in large batches, a lone
	// live event at once. Messages that do not decode are deliveries with
	// Err set (a *BadMessage), in their place. A batch's slices are the
	// follow's again once yield returns (keep the Stored values, not the
	// slices). Ends as Read and Follow do: a read at f.ToSeq (or the last
	// sequence when it was called) or with an error when ctx ends first, a
	// follow without an error when ctx is done, either with an error it
	// cannot recover from (wrapping ErrUnavailable when the log cannot be
	// reached).
	Batches(ctx context.Context, f Filter, o BatchOptions) iter.Seq2[Batch, error]
	// State says where the log begins and ends now.
	State(ctx context.Context) (LogState, error)
}

// BatchOptions shape Store.Batches.
type BatchOptions struct {
	Follow bool // go on with new events once the log's end is reached
	Max    int  // the most messages a batch holds (0: 5,000)
	// Name, if set, names the follower on the log's server, for its
	// operators (JetStream: a durable consumer of that name, made anew at
	// f.FromSeq on every call, so that no state of the follower lives on
	// the server); a follower of the same name elsewhere replaces it.
	Name string
	// Skip, if set, is asked of each message's subject before it is
	// decoded: a message it skips is delivered with only its sequence and
	// Skipped set (so a reader's checkpoint still moves past it), never
	// decoded (a partitioned reader: another worker's devices).
	Skip func(subject string) bool
}

// Delivery is one message of a batch (Store.Batches): the event stored at
// Seq, or, when Err is set, a message there that is not a valid event (a
// *BadMessage).
type Delivery struct {
	Seq     uint64
	Stored  Stored
	Err     error
	Skipped bool // BatchOptions.Skip skipped it: neither decoded nor matched
}

// Batch is consecutive messages of the log in log order, in the runs they
// were decoded in (read them run by run, each in order; they are not copied
// into one slice), and how many messages the log held after the last of
// them when it was delivered: the log's last sequence was then at least
// Last()+Pending.
type Batch struct {
	Runs    [][]Delivery
	Pending uint64
}

// Len is the number of deliveries in b.
func (b Batch) Len() int {
	n := 0
	for _, r := range b.Runs {
		n += len(r)
	}
	return n
}

// Last is the sequence of b's last delivery (0: b is empty).
func (b Batch) Last() uint64 {
	for i := len(b.Runs) - 1; i >= 0; i-- {
		if r := b.Runs[i]; len(r) > 0 {
			return r[len(r)-1].Seq
		}
	}
	return 0
}

// LogState is where the log begins and ends now: a retention policy (or
// damage) may have removed its first events.
type LogState struct {
	FirstSeq  uint64    // the first sequence still stored
	FirstTime time.Time // its stream time
	LastSeq   uint64    // the last sequence stored (0: nothing ever stored)
	Msgs      uint64    // how many messages it holds
}

// Encoded is an event in its wire form, encoded and checked by its writer
// when it was produced (an agent's outbox keeps events this way, on disk):
// the subject it belongs on, its id (sent as the dedup id) and its JSON.
type Encoded struct {
	Subject string
	ID      string
	Data    []byte
}

// EncodedOf encodes and checks e (Encode, SubjectFor).
func EncodedOf(e Event) (Encoded, error) {
	subj, err := SubjectFor(e)
	if err != nil {
		return Encoded{}, err
	}
	data, err := Encode(e)
	if err != nil {
		return Encoded{}, err
	}
	return Encoded{Subject: subj, ID: e.ID, Data: data}, nil
}

// BadMessage is a message on the log that is not a valid event.
type BadMessage struct {
	Seq     uint64
	Subject string
	Err     error
}

func (b *BadMessage) Error() string {
	return fmt.Sprintf("sequence %d on %s: %v", b.Seq, b.Subject, b.Err)
}

func (b *BadMessage) Unwrap() error { return b.Err }

// Heartbeat is one change of the heartbeat bucket (events.HeartbeatBucket):
// a device's latest beat, or (Gone) its key removed, by its TTL or deleted.
type Heartbeat struct {
	Device string
	At     time.Time // when the beat was stored
	Gone   bool
}

// Heartbeats is the log's heartbeat bucket: agents' liveness, which is not
// history and so not on the stream. Implementations: jsstore.
type Heartbeats interface {
	// WatchHeartbeats yields the bucket's current beats and then each
	// change, until ctx is done or the caller stops. No bucket: ErrNotFound.
	WatchHeartbeats(ctx context.Context) (iter.Seq[Heartbeat], error)
}
