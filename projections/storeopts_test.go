package projections

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestStoreWithoutAWriteAheadLogIsFlushedAfterWrites: a derived store has
// no write-ahead log, so what a crash keeps is what was flushed; the
// flusher writes the memtable as a table within StoreFlushEvery after a
// batch. Closed afterwards without closeStore's flush (as a crash would
// leave it), the store opens with the batch.
func TestStoreWithoutAWriteAheadLogIsFlushedAfterWrites(t *testing.T) {
	old := StoreFlushEvery
	StoreFlushEvery = 50 * time.Millisecond
	t.Cleanup(func() { StoreFlushEvery = old })
	dir := t.TempDir()
	db, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Writable(db); err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	eventstest.WaitFor(t, 10*time.Second, "the memtable flushed", func() bool {
		return db.Metrics().Flush.Count > 0
	})
	if err := db.Close(); err != nil { // no flush of its own
		t.Fatal(err)
	}
	db, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(db)
	v, err := get(db, []byte("k"))
	if err != nil || string(v) != "v" {
		t.Fatalf("after reopening: %q, %v; want the flushed value", v, err)
	}
}

// TestStoreRefusesABatchBelowMinStoreFree: with less than MinStoreFree
// free, Writable refuses with a StoreFullError naming the store and its
// path, and StoreFailures lists it until a batch is accepted again.
func TestStoreRefusesABatchBelowMinStoreFree(t *testing.T) {
	dir := t.TempDir()
	db, err := OpenStoreNamed("test", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore(db)
	old := MinStoreFree
	MinStoreFree = 1 << 62 // more than any disk has
	err = Writable(db)
	MinStoreFree = old
	var full *StoreFullError
	if !errors.As(err, &full) || full.Dir != dir || full.Name != "test" {
		t.Fatalf("Writable: %v; want a StoreFullError for %s", err, dir)
	}
	if fs := StoreFailures(dir); len(fs) != 1 || fs[0].Dir != dir {
		t.Fatalf("StoreFailures: %v", fs)
	}
	if err := Writable(db); err != nil {
		t.Fatal(err)
	}
	if fs := StoreFailures(dir); len(fs) != 0 {
		t.Fatalf("StoreFailures after space returned: %v", fs)
	}
}
