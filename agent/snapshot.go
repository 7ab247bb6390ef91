package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/internal/hint"
)

// The agent's Pebble store holds its snapshot (the manifest in force, every
// resource's lifecycle state, the writer clock, the registration it last
// recorded) and its outbox (events not yet acknowledged by the log). Every
// change is one batch: a transition, its events and the clock state land
// together or not at all (Pebble replays a prefix of committed batches after
// a crash, never part of one).
//
// Durability is a group commit: the loop commits each batch to the WAL
// without waiting for fsync, and the drainer fsyncs the WAL (syncLocal) before
// it publishes anything, so no event reaches the log before it and the state
// that produced it are on disk, and one fsync covers every batch since the
// last. A crash can lose only batches nothing was published from; what they
// recorded (an attempt, a drift) is found again after the restart, since every
// resource is observed again and Apply is idempotent.
var (
	keyClock        = []byte("clock")
	keyManifest     = []byte("manifest")
	keyRejected     = []byte("rejected")
	keyRegistration = []byte("registration")
	prefixResource  = []byte("res/")
	prefixOutbox    = []byte("out/")
	prefixParked    = []byte("parked/")
)

// manifestRecord is the manifest in force.
type manifestRecord struct {
	Seq        uint64          `json:"seq"`
	Generation int64           `json:"generation"`
	ID         string          `json:"id"` // the ManifestApplied event id
	Digest     string          `json:"digest"`
	Manifest   events.Manifest `json:"manifest"`
	KeyID      string          `json:"keyId,omitempty"`
}

// resourceRecord is one managed resource's persisted lifecycle.
type resourceRecord struct {
	ID          string          `json:"id"`
	Kind        string          `json:"kind"`
	Resource    events.Resource `json:"resource"`
	Generation  int64           `json:"generation"`
	SpecDigest  string          `json:"specDigest"`
	State       fsm.State       `json:"state"`
	Attempts    int             `json:"attempts"` // attempts for this spec
	Failures    int             `json:"failures"` // consecutive failures, for backoff
	RetryAfter  time.Time       `json:"retryAfter,omitzero"`
	Reason      string          `json:"reason,omitempty"`
	Error       string          `json:"error,omitempty"`
	Correlation string          `json:"correlation,omitempty"` // the ManifestApplied id that set the spec
	LastEvent   string          `json:"lastEvent,omitempty"`   // causation of the next event
	Removing    bool            `json:"removing,omitempty"`
	DriftSeen   string          `json:"driftSeen,omitempty"` // differences last reported under policy report
}

func resourceKey(id string) []byte { return append(append([]byte{}, prefixResource...), id...) }

// parkedKey is where an outbox event the log refused is kept, under its
// outbox sequence.
func parkedKey(seq uint64) []byte {
	k := make([]byte, len(prefixParked)+8)
	copy(k, prefixParked)
	binary.BigEndian.PutUint64(k[len(prefixParked):], seq)
	return k
}

func outboxKey(seq uint64) []byte {
	k := make([]byte, len(prefixOutbox)+8)
	copy(k, prefixOutbox)
	binary.BigEndian.PutUint64(k[len(prefixOutbox):], seq)
	return k
}

// prefixEnd is the first key after every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	end[len(end)-1]++
	return end
}

// quietLogger keeps Pebble's informational chatter out of the agent's log.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)           {}
func (quietLogger) Errorf(format string, a ...any) {}

// Fatalf is called by Pebble when its store cannot go on (a failed log write,
// such as a full disk); Pebble requires that it does not return. Like
// Pebble's own default logger it exits, but with one line that says what to
// do instead of a stack dump: the store recovers from its log on restart.
func (quietLogger) Fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "fleet agent: local state store stopped: %s (free space or fix the disk under --state, then restart the agent: the store recovers from its log)\n", fmt.Sprintf(format, a...))
	os.Exit(1)
}

func openDB(dir string, fs vfs.FS) (*pebble.DB, error) {
	o := &pebble.Options{
		FS:     fs, // nil: the operating system's
		Logger: quietLogger{},
		// a damaged table is an error for the read that finds it (New
		// replaces the store), not a Fatalf
		EventListener: &pebble.EventListener{DataCorruption: func(pebble.DataCorruptionInfo) {}},
		// The store is small (a snapshot of tens of resources, an outbox
		// drained in seconds): a 1 MB block cache and a 2 MB memtable (Go
		// heap in a build without cgo, so they also set the GC's pace). Not
		// 1 MB: on a full disk a memtable that fills rotates the WAL, and a
		// failed rotation is a Go fatal error; roomFor keeps MinStateFree
		// for it (TestAgentStateDiskFull...)
		CacheSize:    1 << 20,
		MemTableSize: 2 << 20,
	}
	// Pebble's default compaction scheduler wakes every 100 ms to grant a
	// compaction if the allowed number rose; with the default concurrency of
	// one (lower and upper bound) it never rises, and a waiting compaction
	// is granted when the running one is done or a flush asks. The same
	// scheduler without that ticker: ten wake-ups a second less on an idle
	// device, and in fleet sim, 18 % of the simulator's CPU at 10,000 devices
	// (BENCHMARKS.md). Pebble names it for tests; it is its scheduler as is.
	o.Experimental.CompactionScheduler = pebble.NewConcurrencyLimitSchedulerWithNoPeriodicGrantingForTest()
	db, err := pebble.Open(dir, o)
	if err != nil {
		return nil, fmt.Errorf("open agent store %s: %w", dir, err)
	}
	return db, nil
}

// MinStateFree is the free space the agent keeps on its state directory's
// file system beyond what a commit writes: room for Pebble to rotate its
// write-ahead log and flush a memtable. Pebble v2 cannot survive running
// out of space there: a failed log rotation is a panic that unlocks an
// unlocked mutex, a Go fatal error no recover catches and no message
// explains (RELIABILITY.md). So the agent refuses the commit first, with
// the reason and what to do, and stops (a non-zero exit: its supervisor
// starts it again, and it goes on once there is room).
var MinStateFree uint64 = 8 << 20

// roomFor refuses a commit of size bytes that would leave less than
// MinStateFree on the state directory's file system (never for a store
// on a file system of its own, WithStoreFS).
func (a *Agent) roomFor(size int) error {
	if a.o.storeFS != nil {
		return nil
	}
	free, _, err := hint.Space(a.o.stateDir)
	if err != nil {
		return nil // the commit itself says what is wrong with the disk
	}
	need := MinStateFree + uint64(size)
	if free >= need {
		return nil
	}
	return fmt.Errorf("agent store %s: the disk is full: %s free, a commit of %s needs %s: %w; free space on that disk, then start the agent again (nothing recorded is lost: the store and the log keep it)",
		a.o.stateDir, hint.Bytes(free), hint.Bytes(uint64(size)), hint.Bytes(need), syscall.ENOSPC)
}

// getJSON reads key into v; found is false when the key is absent.
func getJSON(db *pebble.DB, key []byte, v any) (found bool, err error) {
	b, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("agent store key %s: %w", key, err)
	}
	return true, nil
}

// snapshot is everything the agent loads at start.
type snapshot struct {
	clock        events.ClockState
	manifest     *manifestRecord
	rejectedSeq  uint64
	registration *events.DeviceRegistered
	resources    map[string]*resourceRecord
	outboxNext   uint64 // next outbox sequence
	outboxLen    int
	parked       int
}

func loadSnapshot(db *pebble.DB) (*snapshot, error) {
	s := &snapshot{resources: map[string]*resourceRecord{}, outboxNext: 1}
	if _, err := getJSON(db, keyClock, &s.clock); err != nil {
		return nil, err
	}
	var m manifestRecord
	if ok, err := getJSON(db, keyManifest, &m); err != nil {
		return nil, err
	} else if ok {
		s.manifest = &m
	}
	if _, err := getJSON(db, keyRejected, &s.rejectedSeq); err != nil {
		return nil, err
	}
	var reg events.DeviceRegistered
	if ok, err := getJSON(db, keyRegistration, &reg); err != nil {
		return nil, err
	} else if ok {
		s.registration = &reg
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefixResource, UpperBound: prefixEnd(prefixResource)})
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		var r resourceRecord
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			it.Close()
			return nil, fmt.Errorf("agent store key %s: %w", it.Key(), err)
		}
		s.resources[r.ID] = &r
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: prefixOutbox, UpperBound: prefixEnd(prefixOutbox)})
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		s.outboxLen++
	}
	if it.Last() {
		s.outboxNext = binary.BigEndian.Uint64(it.Key()[len(prefixOutbox):]) + 1
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	it, err = db.NewIter(&pebble.IterOptions{LowerBound: prefixParked, UpperBound: prefixEnd(prefixParked)})
	if err != nil {
		return nil, err
	}
	for it.First(); it.Valid(); it.Next() {
		s.parked++
		// A parked event keeps its sequence: the outbox never reuses one.
		s.outboxNext = max(s.outboxNext, binary.BigEndian.Uint64(it.Key()[len(prefixParked):])+1)
	}
	return s, it.Close()
}

// txn is one atomic change of the agent's store: state records, the events
// they produce (appended to the outbox in order) and the clock state. Only
// one txn is open at a time (the agent's commit lock), so outbox order is
// the order in which events were stamped.
type txn struct {
	a      *Agent
	b      *pebble.Batch
	evs    []events.Event
	writes int
	dirty  map[string]*resourceRecord // written once, as they are at commit
	order  []string                   // dirty ids in first-put order
}

// begin opens a txn; it holds the agent's commit lock until commit or abort.
func (a *Agent) begin() *txn {
	a.commitMu.Lock()
	return &txn{a: a, b: a.db.NewBatch()}
}

// emit stamps an event from the writer clock and appends it to the outbox.
func (t *txn) emit(resource string, generation int64, causation, correlation string, p events.Payload) (events.Event, error) {
	e, err := events.New(t.a.device, resource, generation, "agent:"+t.a.device, p)
	if err != nil {
		return e, err
	}
	t.a.clock.Stamp(&e)
	e.Causation, e.Correlation = causation, correlation
	if e.Correlation == "" {
		e.Correlation = e.ID
	}
	// Checked here, once: the device id (events.New), the resource id and the
	// type (its subject); the payload is a typed struct marshalled by
	// events.New. The outbox keeps the wire form, published as it is.
	if resource != "" {
		if err := events.CheckID("resource", resource); err != nil {
			return e, err
		}
	}
	subj, err := events.SubjectFor(e)
	if err != nil {
		return e, err
	}
	data, err := json.Marshal(e)
	if err != nil {
		return e, fmt.Errorf("event %s for %s: %w", e.Type, resource, err)
	}
	v := encodeOutbox(events.Encoded{Subject: subj, ID: e.ID, Data: data})
	if err := t.b.Set(outboxKey(t.a.outboxNext+uint64(len(t.evs))), v, nil); err != nil {
		return e, err
	}
	t.evs = append(t.evs, e)
	return e, nil
}

func (t *txn) putJSON(key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	t.writes++
	return t.b.Set(key, b, nil)
}

// putResource records that r changed; it is encoded once, as it is when the
// txn commits, however often a step changed it.
func (t *txn) putResource(r *resourceRecord) error {
	if t.dirty == nil {
		t.dirty = map[string]*resourceRecord{}
	}
	if _, ok := t.dirty[r.ID]; !ok {
		t.order = append(t.order, r.ID)
	}
	t.dirty[r.ID] = r
	t.writes++
	return nil
}

func (t *txn) deleteResource(id string) error {
	delete(t.dirty, id)
	t.writes++
	return t.b.Delete(resourceKey(id), nil)
}

// commit writes the batch with the clock state and wakes the drainer. It
// does not fsync: drainAll syncs (syncLocal) before it publishes, so no event
// leaves the device before it is on disk; a power cut can lose the last
// commits, none of them published. It returns the committed events.
func (t *txn) commit() ([]events.Event, error) {
	a := t.a
	defer a.commitMu.Unlock()
	defer t.b.Close()
	if len(t.evs) == 0 && t.writes == 0 {
		return nil, nil
	}
	for _, id := range t.order {
		if r, ok := t.dirty[id]; ok {
			if err := t.putJSON(resourceKey(id), r); err != nil {
				return nil, err
			}
		}
	}
	if len(t.evs) > 0 {
		if err := t.putJSON(keyClock, a.clock.State()); err != nil {
			return nil, err
		}
	}
	if err := a.roomFor(t.b.Len()); err != nil {
		return nil, err
	}
	if err := t.b.Commit(pebble.NoSync); err != nil {
		return nil, fmt.Errorf("commit agent store: %w", err)
	}
	a.commits.Add(1)
	if len(t.evs) > 0 {
		a.outboxNext += uint64(len(t.evs))
		a.outboxLen.Add(int64(len(t.evs)))
		select {
		case a.drainWake <- struct{}{}:
		default:
		}
		if a.o.onEvent != nil {
			a.o.onEvent(t.evs)
		}
	}
	return t.evs, nil
}

// abort drops the txn's writes.
func (t *txn) abort() {
	t.b.Close()
	t.a.commitMu.Unlock()
}

// syncLocal fsyncs the store's WAL if anything was committed since the last
// sync, and returns the last outbox sequence that is now durable.
func (a *Agent) syncLocal() (uint64, error) {
	durable, synced, err := a.syncWAL()
	if synced {
		a.writeMark() // after the sync: the mark never runs ahead of the store
	}
	return durable, err
}

// syncWAL is syncLocal but the mark; synced reports whether it fsynced.
func (a *Agent) syncWAL() (uint64, bool, error) {
	a.syncMu.Lock()
	defer a.syncMu.Unlock()
	a.commitMu.Lock()
	committed, commits := a.outboxNext-1, a.commits.Load()
	cs := a.clock.State() // as of the commits this sync covers
	a.commitMu.Unlock()
	if commits == a.syncedCommits {
		return a.durableSeq, false, nil
	}
	if err := a.db.LogData(nil, pebble.Sync); err != nil {
		return a.durableSeq, false, fmt.Errorf("sync agent store: %w", err)
	}
	a.syncedCommits, a.durableSeq, a.durableClock = commits, committed, cs
	return committed, true, nil
}
