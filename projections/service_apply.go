package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
)

// applyRuns folds a batch's deliveries into m's models in memory, in
// order, and notes the parts they change; flush writes them. Deliveries at
// or below what m has applied (redeliveries) are skipped. The caller holds
// applyMu (or owns m alone); with live, readers are locked out while the
// folds change.
func (s *Service) applyRuns(m *models, runs [][]events.Delivery, live bool) BatchInfo {
	info := BatchInfo{}
	if live {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	for _, run := range runs {
		s.applyDeliveries(m, run, &info)
	}
	return info
}

func (s *Service) applyDeliveries(m *models, run []events.Delivery, info *BatchInfo) {
	for i := range run {
		d := &run[i]
		if d.Seq <= m.applied {
			continue // delivered again: already applied
		}
		if info.FromSeq == 0 {
			info.FromSeq = d.Seq
		}
		m.applied = d.Seq
		if d.Skipped {
			continue // another partition's device (WithPartition)
		}
		err := d.Err
		if err == nil && !events.WrittenByItsWriter(d.Stored.Event) {
			err = events.CheckWriter(d.Stored) // forged: reported with its sequence like a bad message, not folded
		}
		if err != nil {
			m.skipped = append(m.skipped, skip{seq: d.Seq, err: err})
			continue
		}
		for _, rm := range m.set {
			rm.Apply(d.Stored)
			if !m.allDirty {
				rm.Touch(d.Stored, m.dirty)
			}
		}
		info.Events++
	}
}

// flush writes the parts changed since the last flush, the skipped messages
// and the checkpoint in one Pebble batch, synced if sync: a kill at any
// moment leaves the parts and the checkpoint of one and the same sequence.
// It fills info's Devices and Checkpoint. If the write fails, the folds are
// read back from Pebble, so memory never runs ahead of what is stored.
func (s *Service) flush(m *models, sync, live bool, info *BatchInfo) error {
	if m.applied == m.checkpoint && len(m.dirty) == 0 {
		return nil // nothing new (a rebuild's whole write has dirty parts at its checkpoint)
	}
	// encode first, so that the batch is made at its size (a rebuild
	// writes every part at once: growing the batch would copy it again and again)
	type kv struct{ k, v []byte }
	kvs := make([]kv, 0, len(m.dirty))
	size := 1 << 10
	var devices map[string]struct{} // the batch's devices, for listeners (a rebuild has none)
	if live {
		devices = map[string]struct{}{}
	}
	for p := range m.dirty {
		if devices != nil {
			if _, ok := devices[p.Device]; !ok {
				devices[p.Device] = struct{}{}
				info.Devices = append(info.Devices, p.Device)
			}
		}
		x := kv{k: p.key()}
		if v, ok := m.byKind[p.Kind].Encode(p); ok {
			x.v = v
		}
		kvs = append(kvs, x)
		size += len(x.k) + len(x.v) + 16
	}
	b := m.db.NewBatchWithSize(size)
	defer b.Close()
	for _, x := range kvs {
		if x.v != nil {
			_ = b.Set(x.k, x.v, nil)
		} else {
			_ = b.Delete(x.k, nil)
		}
	}
	for _, it := range m.skipped {
		_ = b.Set([]byte(fmt.Sprintf("%s%020d", prefixSkipped, it.seq)), []byte(it.err.Error()), nil)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], m.applied)
	_ = b.Set(keyCheckpoint, v[:], nil)
	_ = b.Set(keyLayout, []byte(m.kinds.layout), nil)
	_ = sync                 // the store has no write-ahead log to sync (StoreOptions): durable at its next flush
	err := m.writeRecords(b) // records.go
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	if err != nil {
		err = fmt.Errorf("write %s at sequence %d: %w", m.kinds.name, m.applied, err)
		if live {
			s.mu.Lock()
			defer s.mu.Unlock()
		}
		if lerr := m.load(); lerr != nil {
			return errors.Join(err, fmt.Errorf("read %s back: %w", m.kinds.name, lerr))
		}
		m.applied = m.checkpoint
		clear(m.dirty)
		m.skipped = m.skipped[:0]
		return err
	}
	s.skipped.Add(uint64(len(m.skipped)))
	for _, it := range m.skipped {
		if errors.Is(it.err, events.ErrForged) {
			s.forged.Add(1)
		}
	}
	m.skipped = m.skipped[:0]
	clear(m.dirty)
	if live { // readers (Checkpoint, Lag) read it under s.mu
		s.mu.Lock()
	}
	m.checkpoint = m.applied
	m.committed() // the record models' records with it
	if live {
		s.mu.Unlock()
	}
	info.Checkpoint = m.checkpoint
	slices.Sort(info.Devices)
	return nil
}
