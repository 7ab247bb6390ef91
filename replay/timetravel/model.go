package timetravel

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// model is the time-travel index as a read model of the read side's
// runtime (projections.RecordModel): the runtime consumes the log, calls
// Apply for every event in log order, and writes the records Apply made
// (WriteRecords) in the Pebble batch of the checkpoint; the model answers
// from its positions in memory and its records in the store.
//
// Its keys (Kinds "en"):
//
//	e <device> 0x00 pos(4)   one event record: seq(8) streamTime(8) at(8) event JSON
//	n <device> 0x00 pos(4)   the device's fold after its first pos events (a snapshot)
type model struct {
	projections.NoParts
	db      *pebble.DB
	every   int
	live    *projections.Fleet // fold of everything applied, in log order: the source of snapshots
	devices map[string]*deviceIndex
	pending []record       // made by Apply, not yet written
	touched []*deviceIndex // devices with positions not yet stored
}

type record struct{ k, v []byte }

type deviceIndex struct {
	at   []int64  // event time (unix ns) by position
	seq  []uint64 // stream sequence by position
	max  []int64  // running maximum of at
	late []int32  // positions j with at[j] < max[j-1], ascending

	// stored is how many positions are in the store (the rest are
	// pending): answers see only those.
	stored  int
	touched bool

	snapPos    int // position of the last snapshot (0: none)
	snapBytes  int // its size
	sinceBytes int // bytes of event records after it
}

const (
	kindEvent    = 'e'
	kindSnapshot = 'n'
)

func newModel(every int) *model {
	return &model{every: every, live: projections.NewFleet(), devices: map[string]*deviceIndex{}}
}

// Kinds are the model's key prefixes: events and snapshots.
func (x *model) Kinds() string { return string([]byte{kindEvent, kindSnapshot}) }

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

// appendRecord encodes s as an event record: seq, stream time and at,
// then the envelope as stored (with the writer and its sequence, which the
// folds deduplicate on).
func appendRecord(b []byte, s events.Stored) []byte {
	b = binary.BigEndian.AppendUint64(b, s.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(s.StreamTime.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(s.At.UnixNano()))
	return events.AppendEventJSON(b, s.Event)
}

func decodeRecord(b []byte) (events.Stored, error) {
	if len(b) < 24 {
		return events.Stored{}, fmt.Errorf("time-travel record of %d bytes: too short", len(b))
	}
	s, err := events.DecodeStoredOwned(slices.Clone(b[24:])) // checked when it was indexed; the one-pass decoder, on a copy (b is Pebble's)
	if err != nil {
		return events.Stored{}, fmt.Errorf("time-travel record: %w", err)
	}
	s.Seq = binary.BigEndian.Uint64(b)
	s.StreamTime = time.Unix(0, int64(binary.BigEndian.Uint64(b[8:]))).UTC()
	s.Subject, _ = events.SubjectFor(s.Event)
	return s, nil
}

// Apply indexes one event: its record, its position, and a snapshot of the
// device's fold when one is due (snapshots.go). A rollout's decision
// (events.IsRolloutDecision) belongs to no device's state: not indexed.
func (x *model) Apply(s events.Stored) {
	if s.Device == "" {
		return
	}
	d := x.device(s.Device)
	pos := len(d.at)
	rec := appendRecord(make([]byte, 0, 256), s)
	x.pending = append(x.pending, record{posKey(kindEvent, s.Device, pos), rec})
	if !d.touched {
		d.touched = true
		x.touched = append(x.touched, d)
	}
	d.add(s.At.UnixNano(), s.Seq)
	d.sinceBytes += len(rec)
	x.live.Apply(s)
	if d.snapshotDue(x.every) {
		if snap, ok := x.live.MarshalDevice(s.Device); ok {
			x.pending = append(x.pending, record{posKey(kindSnapshot, s.Device, pos+1), snap})
			d.snapPos, d.snapBytes, d.sinceBytes = pos+1, len(snap), 0
		}
	}
}

// WriteRecords adds the records Apply made to the checkpoint's batch.
func (x *model) WriteRecords(b *pebble.Batch) error {
	for _, r := range x.pending {
		if err := b.Set(r.k, r.v, nil); err != nil {
			return err
		}
	}
	return nil
}

// Committed makes the written positions answerable.
func (x *model) Committed() {
	clear(x.pending)
	x.pending = x.pending[:0]
	for _, d := range x.touched {
		d.stored, d.touched = len(d.at), false
	}
	clear(x.touched)
	x.touched = x.touched[:0]
}

// LoadRecords loads the positions of every indexed event and, per device,
// the live fold from its last snapshot.
func (x *model) LoadRecords(db *pebble.DB) error {
	x.db = db
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{kindEvent}, UpperBound: []byte{kindEvent + 1}})
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
	for dev, d := range x.devices {
		d.stored = len(d.at)
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

func (x *model) device(id string) *deviceIndex {
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
func (x *model) scan(dev string, from, to int, fn func(events.Stored, int)) error {
	if from >= to {
		return nil
	}
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: posKey(kindEvent, dev, from), UpperBound: posKey(kindEvent, dev, to)})
	if err != nil {
		return err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		s, err := decodeRecord(it.Value())
		if err != nil {
			return fmt.Errorf("device %s: %w", dev, err)
		}
		fn(s, len(it.Value()))
	}
	return it.Error()
}
