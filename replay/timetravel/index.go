package timetravel

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"

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
// The index is the read side's runtime (projections.Service: its
// consumer, checkpoint, batches, recovery from damage, failure log and
// health) with one model of its own (model.go) under its own name and
// directory.
//
// Safe for concurrent use: one writer (Follow or Apply) and any number of
// readers.
type Index struct {
	svc *projections.Service
}

// Name is the index's name in messages and on its store.
const Name = "time-travel index"

// Option configures an Index.
type Option func(*options)

type options struct {
	every  int
	logger *slog.Logger
}

// WithSnapshotEvery sets the distance between snapshots (tests use small ones).
func WithSnapshotEvery(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.every = n
		}
	}
}

// WithLogger sets where Follow logs its failures (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// maxBatch is the most events one index write takes.
const maxBatch = 5000

// Open opens (or creates) the index in dir and loads it: the positions of
// every indexed event and, per device, the live fold from its last
// snapshot.
//
// A damaged index (Pebble finds corruption, or a record does not decode)
// is set aside and started empty, to be taken in again from the log from
// sequence 1 (Follow), instead of refusing to start: it is derived from the
// log. Recovered says so. An index written before it ran on the runtime
// (one Pebble store in dir itself) is deleted and taken in again.
func Open(dir string, opts ...Option) (*Index, error) {
	o := options{every: DefaultSnapshotEvery}
	for _, f := range opts {
		f(&o)
	}
	if err := dropBareStore(dir); err != nil { // recover.go
		return nil, err
	}
	svc, err := projections.Open(dir,
		projections.WithName(Name),
		projections.WithModels(func() projections.ReadModel { return newModel(o.every) }),
		projections.WithDurable(""), // no consumer state on the server: the checkpoint is in the store
		projections.WithMaxBatch(maxBatch),
		projections.WithLogger(o.logger),
		projections.WithLogAction(fmt.Sprintf("restore the data directory from a backup, or stop the server and remove %s: "+
			"the index is built again from the log on start", dir)))
	if err != nil {
		return nil, err
	}
	return &Index{svc: svc}, nil
}

// query calls fn with the index's model under the runtime's read lock.
func (x *Index) query(fn func(*model)) { projections.Query(x.svc, fn) }

// Checkpoint is the last stream sequence the index has taken in.
func (x *Index) Checkpoint() uint64 { return x.svc.Checkpoint() }

// Recovered returns, if Open found the index damaged and started it empty,
// what it found; "" otherwise. Until Follow has caught up, answers cover
// only the part of the log taken in so far (Checkpoint).
func (x *Index) Recovered() string { return x.svc.Recovered() }

// Health is the runtime's verdict on the log the index follows: halted on
// a log that went backwards or lost events it had not taken in, stalled,
// or its store out of space (projections.Service.Health).
func (x *Index) Health() projections.Health { return x.svc.Health() }

// RunStats are the runtime's counters: failures and the last one's cause,
// lag, batches.
func (x *Index) RunStats() projections.Stats { return x.svc.Stats() }

// Msg is one consumed message for Apply: a decoded event, or (Bad) a message
// that is not a valid event and only moves the checkpoint.
type Msg struct {
	Stored events.Stored
	Bad    bool
}

// Apply takes in messages in log order as Follow takes in a batch of the
// log: their records, snapshots and the new checkpoint in one Pebble batch.
// Messages at or before the checkpoint are skipped, so redelivery is
// harmless. Not while Follow runs.
func (x *Index) Apply(msgs []Msg) error {
	run := make([]events.Delivery, len(msgs))
	for i, m := range msgs {
		run[i] = events.Delivery{Seq: m.Stored.Seq, Stored: m.Stored}
		if m.Bad {
			run[i].Err = fmt.Errorf("sequence %d: not a valid event", m.Stored.Seq)
		}
	}
	return x.svc.ApplyBatch(events.Batch{Runs: [][]events.Delivery{run}})
}

// Close closes the store. Follow must have returned.
func (x *Index) Close() error { return x.svc.Close() }

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
func (x *Index) Answer(q Query) (dev projections.Device, ok bool, st Stats, err error) {
	x.query(func(m *model) { dev, ok, st, err = m.answer(q) })
	return dev, ok, st, err
}

// answer is Answer under the runtime's read lock: it sees the positions in
// the store (stored), not those of a batch being written.
func (x *model) answer(q Query) (projections.Device, bool, Stats, error) {
	d := x.devices[q.Device]
	if d == nil || d.stored == 0 {
		return projections.Device{}, false, Stats{}, fmt.Errorf("device %s: %w: %w", q.Device, events.ErrNotFound, ErrUnknownDevice)
	}
	n := d.stored
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
			if int(j) >= n {
				break // not yet stored
			}
			if d.at[j] > t {
				continue
			}
			v, closer, err := x.db.Get(posKey(kindEvent, q.Device, int(j)))
			if err != nil {
				return projections.Device{}, false, st, fmt.Errorf("device %s event %d: %w", q.Device, j, err)
			}
			s, err := decodeRecord(v)
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
