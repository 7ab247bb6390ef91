package projections

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/internal/hint"
)

// StoreOptions are the Pebble options of the server's derived stores (the
// read models here, the time-travel index in replay/timetravel): they must
// not take more disk than the log they are derived from (BENCHMARKS.md,
// derived bytes per log byte). Tables are compressed with Pebble's
// Balanced settings: zstd (level 1) on the last level, where a small store
// keeps nearly all its data, the fastest compression above it.
//
// A store's keys are devices (and their times), so every memtable flushed
// spans the whole key space and a compaction into the last level rewrites
// all of it: compactions are made rare, not small. The memtable is 4 MiB
// (Pebble's default) and up to 16 flushed tables wait in level 0 before
// one compaction takes them all (Pebble's default is 4). With a 1 MiB
// memtable, 4 tables and zstd level 3, compactions were 44 % of the
// server's CPU during a 5,000-device rollout (BENCHMARKS.md, "derived
// stores' compactions").
//
// The write-ahead log is off: a derived store is the log folded, its
// checkpoint written in the same batch as what it folded, so a store that
// loses its last unflushed batches (a crash) is a store at an earlier
// checkpoint, which takes those events in again from the log. With a
// write-ahead log Pebble cannot survive a full disk: a failed log write is
// "pebble: fatal commit error" and a failed log rotation is a panic that
// unlocks an unlocked mutex (a Go fatal error no recover catches), and the
// same instance cannot go on after either (cockroachdb/pebble#3427).
// Without it no commit writes to disk; memtables are written as tables by
// flushes, whose failures Pebble retries, and Writable refuses batches
// before the disk is that full.
func StoreOptions(logger pebble.Logger) *pebble.Options {
	o := &pebble.Options{Logger: logger, MemTableSize: 4 << 20, DisableWAL: true,
		L0CompactionThreshold: 16, L0StopWritesThreshold: 64}
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionBalanced })
	return o
}

// MinStoreFree is the free space below which a derived store takes no more
// batches: room for the memtables' flushes (two of 4 MiB) and a compaction's output.
var MinStoreFree uint64 = 16 << 20

// StoreFullAction is what to do about a derived store out of disk space.
const StoreFullAction = "free space on that file system or move the data directory to a larger one (stop the server, move it, start with --data); " +
	"nothing is lost: the store takes the events in again from the log once there is room, without a restart"

// StoreFullError is a derived store refusing a batch for want of disk space.
type StoreFullError struct {
	Name, Dir   string
	Free, Total uint64
	Err         error // the write's or the file system's error, if any
}

func (e *StoreFullError) Error() string {
	s := fmt.Sprintf("the %s store %s is out of disk space (%s free of %s, it needs %s): it takes no more events until there is room",
		e.Name, e.Dir, BytesText(e.Free), BytesText(e.Total), BytesText(MinStoreFree))
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *StoreFullError) Unwrap() error { return e.Err }

// a store's state, by its *pebble.DB
type storeState struct {
	name, dir string
	mu        sync.Mutex
	failed    error // the last refusal, until a batch is written again
	bg        error // Pebble's last background (flush, compaction) error
	wrote     bool  // a batch may have been written since the last flush
	stop      chan struct{}
	stopped   chan struct{}
}

// StoreFlushEvery is how often a derived store's memtable is written as a
// table when batches came: what a crash can lose (and the store then takes
// in again from the log) is at most this much, so that a log whose
// retention moves its first sequence on is not left behind a store's
// durable checkpoint.
var StoreFlushEvery = 10 * time.Second

// flusher flushes db every StoreFlushEvery after batches came, while its
// disk has room; without waiting for the flush (which Pebble retries when
// the disk fills meanwhile), so that closing never waits on it.
func (st *storeState) flusher(db *pebble.DB) {
	defer close(st.stopped)
	t := time.NewTicker(StoreFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-st.stop:
			return
		case <-t.C:
		}
		if _, err := os.Stat(st.dir); err != nil { // a store given up and removed
			st.forget(db)
			return
		}
		st.mu.Lock()
		flush := st.wrote && st.check() == nil
		if flush {
			st.wrote = false
		}
		st.mu.Unlock()
		if flush && !asyncFlush(db) { // closed without closeStore (a store given up)
			st.forget(db)
			return
		}
	}
}

// asyncFlush starts a flush of db; false if db is closed.
func asyncFlush(db *pebble.DB) (open bool) {
	defer func() {
		if recover() != nil { // Pebble panics with ErrClosed
			open = false
		}
	}()
	_, _ = db.AsyncFlush()
	return true
}

func (st *storeState) forget(db *pebble.DB) {
	stores.Delete(db)
	if v, ok := stores.Load(st.dir); ok && v == st {
		stores.Delete(st.dir)
	}
}

var stores sync.Map // *pebble.DB -> *storeState; dir -> *storeState

// OpenStore opens (or creates) the read models' store in dir: OpenStoreNamed.
func OpenStore(dir string) (*pebble.DB, error) { return OpenStoreNamed("read models", dir) }

// OpenStoreNamed opens (or creates) a derived store called name (in
// messages) in dir with StoreOptions, a logger that says nothing but a
// fatal error, and a damaged table's error returned to the read that found
// it (pebble.IsCorruptionError), so the caller can start the store again
// from the log instead of stopping.
func OpenStoreNamed(name, dir string) (*pebble.DB, error) {
	st := &storeState{name: name, dir: dir}
	o := StoreOptions(storeLogger{st})
	o.EventListener = &pebble.EventListener{
		DataCorruption: func(pebble.DataCorruptionInfo) {},
		BackgroundError: func(err error) {
			st.mu.Lock()
			st.bg = err
			st.mu.Unlock()
		},
		FlushEnd: func(info pebble.FlushInfo) {
			if info.Err == nil {
				st.mu.Lock()
				st.bg = nil
				st.mu.Unlock()
			}
		},
	}
	db, err := pebble.Open(dir, o)
	if err != nil {
		return nil, err
	}
	stores.Store(db, st)
	stores.Store(dir, st)
	st.stop, st.stopped = make(chan struct{}), make(chan struct{})
	go st.flusher(db)
	return db, nil
}

func stateOf(db *pebble.DB) *storeState {
	if v, ok := stores.Load(db); ok {
		return v.(*storeState)
	}
	return nil
}

// Writable returns a *StoreFullError when db's file system has less than
// MinStoreFree free, or Pebble's last flush failed for want of space; the
// caller then writes nothing (its checkpoint stays, nothing is lost) and
// tries again later. A store not opened by OpenStore is always writable.
func Writable(db *pebble.DB) error {
	st := stateOf(db)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	err := st.check()
	st.failed = err
	if err == nil {
		st.wrote = true // the caller writes now
	}
	return err
}

// check is Writable without noting anything; st.mu is held.
func (st *storeState) check() error {
	free, total, err := space(st.dir)
	switch {
	case err != nil:
		return &StoreFullError{Name: st.name, Dir: st.dir, Err: err}
	case free < MinStoreFree:
		return &StoreFullError{Name: st.name, Dir: st.dir, Free: free, Total: total}
	case st.bg != nil && errors.Is(st.bg, syscall.ENOSPC):
		return &StoreFullError{Name: st.name, Dir: st.dir, Free: free, Total: total, Err: st.bg}
	}
	return nil
}

// StoreFailures lists the derived stores under dir that refused their last
// batch for want of space, sorted by path.
func StoreFailures(dir string) []*StoreFullError {
	var out []*StoreFullError
	stores.Range(func(k, v any) bool {
		p, ok := k.(string)
		if !ok || (p != dir && !strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")) {
			return true
		}
		st := v.(*storeState)
		st.mu.Lock()
		var sf *StoreFullError
		if errors.As(st.failed, &sf) {
			out = append(out, sf)
		}
		st.mu.Unlock()
		return true
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out
}

func space(dir string) (free, total uint64, err error) { return hint.Space(dir) }

// BytesText is n bytes as people read it: 1.5 GiB, 3.2 MiB, 512 KiB.
func BytesText(n uint64) string { return hint.Bytes(n) }

// closeStore writes the memtable as tables (the store has no write-ahead
// log: what is not flushed is not on disk) and closes db. On a disk too
// full for that it closes without it, and says what it could not write:
// the store opens at its last flushed checkpoint and takes the rest in
// again from the log.
func closeStore(db *pebble.DB) error {
	st := stateOf(db)
	if st != nil {
		close(st.stop)
		<-st.stopped
	}
	var ferr error
	var full *StoreFullError
	if err := Writable(db); errors.As(err, &full) {
		ferr = fmt.Errorf("%s free of %s", BytesText(full.Free), BytesText(full.Total))
		if full.Err != nil {
			ferr = full.Err
		}
	} else {
		done := make(chan error, 1)
		go func() { done <- db.Flush() }()
		select {
		case ferr = <-done:
		case <-time.After(10 * time.Second): // a flush Pebble keeps retrying
			ferr = errors.New("flushing did not finish in 10 s")
		}
	}
	err := db.Close()
	if st != nil {
		st.forget(db)
	}
	if ferr != nil && st != nil {
		if err != nil {
			ferr = fmt.Errorf("%w; closing: %w", ferr, err)
		}
		return fmt.Errorf("the %s store %s could not write what it took in since its last flush (%w): "+
			"it takes those events in again from the log at the next start", st.name, st.dir, ferr)
	}
	return err
}

// CloseStore is closeStore for the other derived stores.
func CloseStore(db *pebble.DB) error { return closeStore(db) }

// storeLogger says nothing but a fatal error. Pebble calls Fatalf when a
// store cannot go on (with the write-ahead log off: a table written but
// the MANIFEST not, on a full disk) and requires that it does not return;
// like Pebble's own logger it exits, with one line saying what to do.
type storeLogger struct{ st *storeState }

func (storeLogger) Infof(string, ...any)  {}
func (storeLogger) Errorf(string, ...any) {}
func (l storeLogger) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleet server: the %s store %s stopped: %s (%s; then start the server again: the store goes on from its last flushed checkpoint)\n",
		l.st.name, l.st.dir, fmt.Sprintf(format, args...), StoreFullAction)
	os.Exit(1)
}

// storeFull is the read models' store's refusal of its last batch, if it
// refused it for want of space (Writable).
func (s *Service) storeFull() *StoreFullError {
	s.mu.RLock()
	m := s.m
	s.mu.RUnlock()
	if m == nil {
		return nil
	}
	st := stateOf(m.db)
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var sf *StoreFullError
	if errors.As(st.failed, &sf) {
		return sf
	}
	return nil
}
