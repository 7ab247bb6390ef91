package projections

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
)

// StoreOptions are the Pebble options of the server's derived stores (the
// read models here, the time-travel index in replay/timetravel): they must
// not take more disk than the log they are derived from (BENCHMARKS.md,
// derived bytes per log byte). Tables are compressed with zstd on every
// level (events are JSON, which zstd shrinks far more than the default
// snappy), and the memtable, whose write-ahead log is
// on disk until it is flushed, is 1 MiB instead of 4.
func StoreOptions(logger pebble.Logger) *pebble.Options {
	o := &pebble.Options{Logger: logger, MemTableSize: 1 << 20}
	zstd := pebble.UniformDBCompressionSettings(sstable.ZstdCompression)
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return zstd })
	return o
}

// closeStore flushes the memtable into tables, so that the write-ahead log
// is not left on disk beside them, and closes db.
func closeStore(db *pebble.DB) error {
	_ = db.Flush()
	return db.Close()
}

// CloseStore is closeStore for the other derived stores.
func CloseStore(db *pebble.DB) error { return closeStore(db) }
