package timetravel

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Size is what the index takes on disk.
type Size struct {
	// Data is the bytes of its live sstables: the events, snapshots and
	// checkpoint, compressed. This is the part that grows with the log.
	Data uint64 `json:"data"`
	// Disk is everything Pebble holds in its directory: Data plus the
	// write-ahead log (about a memtable's worth, 4 MiB by default, recycled),
	// obsolete files not yet removed, the manifest and options files.
	Disk uint64 `json:"disk"`
}

// DiskUsage flushes the index's memtable, compacts the whole store and
// returns what it then takes on disk: what the index costs once Pebble has
// settled, for measuring and for operators. On a large index it can take
// seconds; the index takes in the log meanwhile.
func (x *Index) DiskUsage(ctx context.Context) (Size, error) {
	var db *pebble.DB
	x.query(func(m *model) { db = m.db })
	if db == nil {
		return Size{}, errors.New("time-travel index: closed")
	}
	if err := db.Flush(); err != nil {
		return Size{}, fmt.Errorf("time-travel index: flush: %w", err)
	}
	if err := db.Compact(ctx, []byte{0}, []byte{0xff}, true); err != nil {
		return Size{}, fmt.Errorf("time-travel index: compact: %w", err)
	}
	m := db.Metrics()
	return Size{Data: m.Table.Local.LiveSize + m.BlobFiles.Local.LiveSize, Disk: m.DiskSpaceUsage()}, nil
}
