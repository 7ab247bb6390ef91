package timetravel

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// DefaultSnapshotEvery is the least number of a device's events between two
// snapshots of its fold (see Index for the byte rule that may space them
// further): an answer folds this many events onto a snapshot, or as many as
// fill the snapshot's size in bytes when the device's state is large, plus
// the device's late events that belong to it.
const DefaultSnapshotEvery = 128

// Index is the time-travel index: per device, in log order, every event's
// event time and sequence, the events themselves (the deltas), and
// snapshots of the device's fold, in a Pebble store.
//
// Size. A snapshot is written after at least SnapshotEvery of the device's
// events AND at least as many bytes of its event records as the last
// snapshot had (snapshots.go). So the bytes of snapshots never exceed the
// bytes of events they follow plus what the state grew by: the index stays
// linear in the log however many resources a device has (a snapshot every
// SnapshotEvery events alone is quadratic: a device whose state grows with
// every event writes ever larger snapshots equally often). An answer reads
// one snapshot and folds at most max(SnapshotEvery, one snapshot's size in
// bytes) of events onto it: never more than twice the work of loading the
// state itself.
//
// Why this is correct with late events. Number a device's events 0..n-1 in
// log order, with event times a_0..a_{n-1}, and let m_j be the largest of
// a_0..a_j (the running maximum). The state at T is the fold, in log order,
// of {j : a_j <= T}. Let p be the first position with m_p > T. Every event
// before p has a_j <= m_j <= T, so it is in; every event from p on that is
// in has a_j <= T < m_{j-1}, so it is "late" (stamped before something
// already in the log). So the answer is the fold of the log prefix [0, p)
// (a snapshot at or before p plus fewer than SnapshotEvery events) followed
// by the late events after p stamped at or before T, in log order. Prefixes
// of the log never change (new events only ever come after them), so no
// snapshot is ever invalidated by a late arrival: a late event is simply a
// late position, found by the second step.
//
// Safe for concurrent use: one writer (Apply) and any number of readers.
type Index struct {
	mu         sync.RWMutex
	db         *pebble.DB
	every      int
	live       *projections.Fleet // fold of everything applied, in log order: the source of snapshots
	devices    map[string]*deviceIndex
	checkpoint uint64
	recovered  string // why Open started empty (recover.go)
	msgs       []Msg  // ApplyBatch's, reused
}

type deviceIndex struct {
	at   []int64  // event time (unix ns) by position
	seq  []uint64 // stream sequence by position
	max  []int64  // running maximum of at
	late []int32  // positions j with at[j] < max[j-1], ascending

	snapPos    int // position of the last snapshot (0: none)
	snapBytes  int // its size
	sinceBytes int // bytes of event records after it
}

// Option configures an Index.
type Option func(*Index)

// WithSnapshotEvery sets the distance between snapshots (tests use small ones).
func WithSnapshotEvery(n int) Option {
	return func(x *Index) {
		if n > 0 {
			x.every = n
		}
	}
}

var keyCheckpoint = []byte("c")

// key layout: 'e' device 0x00 pos(4) -> event record; 's' device 0x00 pos(4) -> fold snapshot after pos events.
func posKey(kind byte, device string, pos int) []byte {
	k := make([]byte, 0, 2+len(device)+4)
	k = append(k, kind)
	k = append(k, device...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(pos))
}

func splitKey(k []byte) (device string, pos int, ok bool) {
	if len(k) < 7 || k[len(k)-5] != 0 {
		return "", 0, false
	}
	return string(k[1 : len(k)-5]), int(binary.BigEndian.Uint32(k[len(k)-4:])), true
}

// record: seq(8) streamTime(8) at(8) event JSON
func encodeRecord(s events.Stored, raw []byte) []byte {
	b := make([]byte, 24, 24+len(raw))
	binary.BigEndian.PutUint64(b, s.Seq)
	binary.BigEndian.PutUint64(b[8:], uint64(s.StreamTime.UnixNano()))
	binary.BigEndian.PutUint64(b[16:], uint64(s.At.UnixNano()))
	return append(b, raw...)
}

func decodeRecord(b []byte, subject func(events.Event) string) (events.Stored, error) {
	if len(b) < 24 {
		return events.Stored{}, fmt.Errorf("time-travel record of %d bytes: too short", len(b))
	}
	s, err := events.DecodeStoredOwned(slices.Clone(b[24:])) // checked when it was indexed; the one-pass decoder, on a copy (b is Pebble's)
	if err != nil {
		return events.Stored{}, fmt.Errorf("time-travel record: %w", err)
	}
	s.Seq = binary.BigEndian.Uint64(b)
	s.StreamTime = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))).UTC()
	s.Subject = subject(s.Event)
	return s, nil
}

func subjectOf(e events.Event) string {
	s, _ := events.SubjectFor(e)
	return s
}

// Open opens (or creates) the index in dir and loads it: the positions of
// every indexed event and, per device, the live fold from its last snapshot.
//
// A damaged index (Pebble finds corruption, or a record does not decode) is
// deleted and started empty, to be taken in again from the log from
// sequence 1 (Follow), instead of refusing to start: it is derived from the
// log. Recovered says so.
func Open(dir string, opts ...Option) (*Index, error) {
	x, err := open(dir, opts...)
	if err != nil && damagedIndex(err) { // recover.go
		return reopenEmpty(dir, err, opts...)
	}
	return x, err
}

func open(dir string, opts ...Option) (*Index, error) {
	db, err := projections.OpenStoreNamed("time-travel index", dir)
	if err != nil {
		return nil, fmt.Errorf("open time-travel index %s: %w", dir, err)
	}
	x := &Index{db: db, every: DefaultSnapshotEvery, live: projections.NewFleet(), devices: map[string]*deviceIndex{}}
	for _, o := range opts {
		o(x)
	}
	if err := x.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("load time-travel index %s: %w: %w", dir, errDamagedRecord, err)
	}
	return x, nil
}

func (x *Index) load() error {
	if v, closer, err := x.db.Get(keyCheckpoint); err == nil {
		if len(v) == 8 {
			x.checkpoint = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: []byte("e"), UpperBound: []byte("f")})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		dev, pos, ok := splitKey(it.Key())
		v := it.Value()
		if !ok || len(v) < 24 {
			return fmt.Errorf("bad key %q", it.Key())
		}
		d := x.device(dev)
		if pos != len(d.at) {
			return fmt.Errorf("device %s: position %d after %d", dev, pos, len(d.at))
		}
		d.add(int64(binary.BigEndian.Uint64(v[16:])), binary.BigEndian.Uint64(v))
	}
	if err := it.Error(); err != nil {
		return err
	}
	// the live fold: each device from its last snapshot, then its events after it
	for dev, d := range x.devices {
		snap, v, err := x.snapshotAt(dev, len(d.at))
		if err != nil {
			return err
		}
		if snap > 0 {
			if err := x.live.LoadDevice(v); err != nil {
				return fmt.Errorf("device %s snapshot %d: %w", dev, snap, err)
			}
		}
		d.snapPos, d.snapBytes, d.sinceBytes = snap, len(v), 0
		if err := x.scan(dev, snap, len(d.at), func(s events.Stored, size int) { x.live.Apply(s); d.sinceBytes += size }); err != nil {
			return err
		}
	}
	return nil
}

func (x *Index) device(id string) *deviceIndex {
	d := x.devices[id]
	if d == nil {
		d = &deviceIndex{}
		x.devices[id] = d
	}
	return d
}

func (d *deviceIndex) add(at int64, seq uint64) {
	n := len(d.at)
	m := at
	if n > 0 && d.max[n-1] > at {
		m = d.max[n-1]
		d.late = append(d.late, int32(n))
	}
	d.at = append(d.at, at)
	d.seq = append(d.seq, seq)
	d.max = append(d.max, m)
}

// scan folds the device's stored events at positions [from, to); fn gets
// each event and the size of its record.
func (x *Index) scan(dev string, from, to int, fn func(events.Stored, int)) error {
	if from >= to {
		return nil
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: posKey('e', dev, from), UpperBound: posKey('e', dev, to)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		s, err := decodeRecord(it.Value(), subjectOf)
		if err != nil {
			return fmt.Errorf("device %s: %w", dev, err)
		}
		fn(s, len(it.Value()))
	}
	return it.Error()
}

// Checkpoint is the last stream sequence the index has taken in.
func (x *Index) Checkpoint() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.checkpoint
}

// Msg is one consumed message for Apply: a decoded event, or (Bad) a message
// that is not a valid event and only moves the checkpoint.
type Msg struct {
	Stored events.Stored
	Raw    []byte // the message data, stored as is
	Bad    bool
}

// Apply takes in messages in log order and writes them, their snapshots
// and the new checkpoint in one Pebble batch. Messages at or before
// the checkpoint are skipped, so redelivery is harmless.
func (x *Index) Apply(msgs []Msg) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := x.db.NewBatch()
	defer b.Close()
	type added struct {
		dev  string
		snap [3]int // the device's snapPos, snapBytes, sinceBytes before
	}
	var adds []added
	cp := x.checkpoint
	for _, m := range msgs {
		s := m.Stored
		if s.Seq <= cp {
			continue
		}
		cp = s.Seq
		if m.Bad {
			continue
		}
		raw := m.Raw
		if raw == nil {
			var err error
			if raw, err = json.Marshal(s.Event); err != nil {
				return err
			}
		}
		if s.Device == "" { // a rollout's decision (events.IsRolloutDecision): no device's state
			continue
		}
		d := x.device(s.Device)
		pos := len(d.at)
		rec := encodeRecord(s, raw)
		if err := b.Set(posKey('e', s.Device, pos), rec, nil); err != nil {
			return err
		}
		adds = append(adds, added{s.Device, [3]int{d.snapPos, d.snapBytes, d.sinceBytes}})
		d.add(s.At.UnixNano(), s.Seq)
		d.sinceBytes += len(rec)
		x.live.Apply(s)
		if d.snapshotDue(x.every) {
			snap, ok := x.live.MarshalDevice(s.Device)
			if ok {
				if err := b.Set(posKey('s', s.Device, pos+1), snap, nil); err != nil {
					return err
				}
				d.snapPos, d.snapBytes, d.sinceBytes = pos+1, len(snap), 0
			}
		}
	}
	if cp == x.checkpoint {
		return nil
	}
	if err := b.Set(keyCheckpoint, binary.BigEndian.AppendUint64(nil, cp), nil); err != nil {
		return err
	}
	// Not synced: the index is derived from the log, and a batch carries its
	// own checkpoint, so a crash can only lose whole batches at the end; the
	// index then resumes from the older checkpoint and takes them in again.
	if err := b.Commit(pebble.NoSync); err != nil {
		// undo the in-memory positions so memory and store agree; the caller retries from the checkpoint
		for i := len(adds) - 1; i >= 0; i-- {
			d := x.devices[adds[i].dev]
			n := len(d.at) - 1
			if len(d.late) > 0 && int(d.late[len(d.late)-1]) == n {
				d.late = d.late[:len(d.late)-1]
			}
			d.at, d.seq, d.max = d.at[:n], d.seq[:n], d.max[:n]
			d.snapPos, d.snapBytes, d.sinceBytes = adds[i].snap[0], adds[i].snap[1], adds[i].snap[2]
		}
		x.live = projections.NewFleet()
		_ = x.reloadLive()
		return fmt.Errorf("write time-travel index: %w", err)
	}
	x.checkpoint = cp
	return nil
}

func (x *Index) reloadLive() error {
	x.devices = map[string]*deviceIndex{}
	return x.load()
}

// Stats describe how an answer was found.
type Stats struct {
	Snapshot      int `json:"snapshot"`      // position of the snapshot used (0: none)
	SnapshotBytes int `json:"snapshotBytes"` // its size
	Folded        int `json:"folded"`        // events folded onto it
	FoldedBytes   int `json:"foldedBytes"`   // bytes of the records of the Folded-Late prefix events
	Late          int `json:"late"`          // of which late events
	Events        int `json:"events"`        // the device's indexed events
}

// ErrUnknownDevice: the index holds no event of the device.
var ErrUnknownDevice = errors.New("no events of this device")

// Answer returns the device as q asks (see Query), and whether it existed
// then. A device the index has never seen is ErrUnknownDevice wrapping
// events.ErrNotFound.
func (x *Index) Answer(q Query) (projections.Device, bool, Stats, error) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	d := x.devices[q.Device]
	if d == nil {
		return projections.Device{}, false, Stats{}, fmt.Errorf("device %s: %w: %w", q.Device, events.ErrNotFound, ErrUnknownDevice)
	}
	n := len(d.at)
	p := n // first position not in the prefix
	switch {
	case !q.At.IsZero():
		t := q.At.UnixNano()
		p = sort.Search(n, func(i int) bool { return d.max[i] > t })
	case q.Seq > 0:
		p = sort.Search(n, func(i int) bool { return d.seq[i] > q.Seq })
	}
	st := Stats{Events: n}
	f := projections.NewFleet()
	snap, v, err := x.snapshotAt(q.Device, p)
	if err != nil {
		return projections.Device{}, false, st, err
	}
	if snap > 0 {
		if err := f.LoadDevice(v); err != nil {
			return projections.Device{}, false, st, fmt.Errorf("device %s snapshot %d: %w", q.Device, snap, err)
		}
	}
	st.Snapshot, st.SnapshotBytes = snap, len(v)
	apply := func(s events.Stored, size int) { f.Apply(s); st.Folded++; st.FoldedBytes += size }
	if err := x.scan(q.Device, snap, p, apply); err != nil {
		return projections.Device{}, false, st, err
	}
	if !q.At.IsZero() {
		t := q.At.UnixNano()
		i := sort.Search(len(d.late), func(i int) bool { return int(d.late[i]) > p })
		for _, j := range d.late[i:] {
			if d.at[j] > t {
				continue
			}
			v, closer, err := x.db.Get(posKey('e', q.Device, int(j)))
			if err != nil {
				return projections.Device{}, false, st, fmt.Errorf("device %s event %d: %w", q.Device, j, err)
			}
			s, err := decodeRecord(v, subjectOf)
			closer.Close()
			if err != nil {
				return projections.Device{}, false, st, err
			}
			apply(s, 0)
			st.Late++
		}
	}
	dev, ok := f.Device(q.Device)
	return dev, ok, st, nil
}

// Close closes the store.
func (x *Index) Close() error {
	x.mu.Lock()
	defer x.mu.Unlock()
	return projections.CloseStore(x.db)
}
