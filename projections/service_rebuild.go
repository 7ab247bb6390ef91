package projections

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Rebuild builds the read models from sequence 1 into a fresh store while
// the current ones keep answering, then swaps them in and deletes the old
// store. progress, if not nil, is called now and then with the sequences
// done and the total. It may run while Run runs; the live loop pauses only
// for the final catch-up and the swap.
func (s *Service) Rebuild(ctx context.Context, log Log, progress func(done, total uint64)) error {
	if !s.rebuilding.CompareAndSwap(false, true) {
		return fmt.Errorf("a rebuild is already running")
	}
	defer s.rebuilding.Store(false)
	// A rebuild allocates fast and keeps little (the folds are small next to
	// the stream): collect garbage less often while it runs.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	state, err := log.State(ctx)
	if err != nil {
		return err
	}
	total := state.LastSeq
	s.rebuildDone.Store(0)
	s.rebuildTotal.Store(total)
	name := "models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	nm, err := openModels(filepath.Join(s.dir, name), s.kinds)
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			nm.db.Close()
			os.RemoveAll(nm.dir)
		}
	}()
	report := func() {
		s.rebuildDone.Store(nm.applied)
		if progress != nil {
			progress(nm.applied, s.rebuildTotal.Load())
		}
	}
	report()
	// Fold in memory; write the whole state once at the end (unsynced, then
	// the tail synced): nothing is read from this store before the swap,
	// and an interrupted rebuild starts over.
	if total > 0 {
		lastReport := time.Now()
		nm.allDirty = true // written whole below
		for b, err := range log.Batches(ctx, events.Filter{FromSeq: 1, ToSeq: total}, events.BatchOptions{Max: s.maxBatch, Skip: s.skip()}) {
			if err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			s.applyRuns(nm, b.Runs, false)
			if len(nm.skipped) > 10000 || len(nm.recs) > 0 { // record models write as they go: they would hold the log in memory
				if err := s.flush(nm, false, false, &BatchInfo{}); err != nil {
					return fmt.Errorf("rebuild: %w", err)
				}
			}
			if time.Since(lastReport) > 500*time.Millisecond {
				lastReport = time.Now()
				report()
			}
		}
	}
	nm.allDirty = false
	clear(nm.dirty)
	for _, rm := range nm.set {
		rm.Parts(func(p Part) { nm.dirty[p] = struct{}{} })
	}
	if err := s.flush(nm, false, false, &BatchInfo{}); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	// catch up with the live models, then swap
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	target := s.m.applied
	if s.Halted() {
		target = nm.applied // the live models folded events the log no longer has: take the log as it is
	}
	if target > nm.applied {
		s.rebuildTotal.Store(target)
		for b, err := range log.Batches(ctx, events.Filter{FromSeq: nm.applied + 1, ToSeq: target}, events.BatchOptions{Max: s.maxBatch, Skip: s.skip()}) {
			if err != nil {
				return fmt.Errorf("rebuild catch-up: %w", err)
			}
			s.applyRuns(nm, b.Runs, false)
		}
		// gap-free up to target: mark it even if the last messages were not delivered
		nm.applied = max(nm.applied, target)
	}
	if err := s.flush(nm, true, false, &BatchInfo{}); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	report()
	if err := writeCurrent(s.dir, name); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.m
	s.m = nm
	s.mu.Unlock()
	ok = true
	s.syncMu.Lock()
	old.db.Close()
	s.syncMu.Unlock()
	os.RemoveAll(old.dir)
	s.liftHalt()
	s.done(BatchInfo{Checkpoint: nm.checkpoint, Devices: nm.devices()})
	return nil
}
