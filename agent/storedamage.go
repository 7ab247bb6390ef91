package agent

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fleet-dev/fleet/events"
)

// The store mark is a small file beside the agent's Pebble store that says
// how far the store had come: the last outbox sequence fsynced, the last one
// the log acknowledged, and the writer clock's incarnation, sequence and
// time. It is rewritten (not fsynced: it only ever lags the store) after
// every sync of the store and every acknowledged batch. At start the store
// must reach at least as far; if it does not, its write-ahead log lost
// records that had been synced (a truncated or damaged WAL: Pebble replays
// the intact prefix without a word), and the agent says what was lost.
type storeMark struct {
	Durable uint64    `json:"durable"` // last outbox sequence known fsynced
	Acked   uint64    `json:"acked"`   // last outbox sequence the log acknowledged
	Writer  string    `json:"writer"`
	Seq     uint64    `json:"seq"`
	LastAt  time.Time `json:"lastAt"`
}

func markPath(stateDir string) string { return filepath.Join(stateDir, "store.mark") }

// readMark reads the mark; ok is false if there is none or it does not
// parse (a torn write after a power cut: nothing to compare with).
func readMark(stateDir string) (m storeMark, ok bool) {
	b, err := os.ReadFile(markPath(stateDir))
	if err != nil || json.Unmarshal(b, &m) != nil {
		return storeMark{}, false
	}
	return m, true
}

// writeMark records how far the store has come. Errors are logged once by
// the caller's logger: the mark only serves to detect damage.
func (a *Agent) writeMark() {
	a.markMu.Lock()
	defer a.markMu.Unlock()
	a.syncMu.Lock()
	durable, cs := a.durableSeq, a.durableClock
	a.syncMu.Unlock()
	m := storeMark{Durable: durable, Acked: a.acked, Writer: cs.Writer, Seq: cs.Seq, LastAt: cs.LastAt}
	if m == a.mark {
		return
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(markPath(a.o.stateDir), b, 0o600); err != nil {
		if !a.markErr {
			a.log.Warn("agent store mark not written: damage to the store would go unnoticed", "err", err)
			a.markErr = true
		}
		return
	}
	a.mark = m
}

// openStore opens the agent's Pebble store. A store Pebble refuses as
// corrupt (a damaged write-ahead log it cannot replay past) is moved aside,
// kept for inspection, and an empty one opened in its place: the agent
// reads its manifest from the log again and converges; what the old store
// held and the log did not is reported by checkStore.
func openStore(dir string, fs vfs.FS, log *slog.Logger) (*pebble.DB, bool, error) {
	db, err := openDB(dir, fs)
	if err == nil || !pebble.IsCorruptionError(err) {
		return db, false, err
	}
	db, err = replaceStore(dir, fs, err, log)
	return db, err == nil, err
}

// replaceStore moves the damaged store in dir aside (cause: what Pebble
// found) and opens an empty one in its place.
func replaceStore(dir string, fs vfs.FS, cause error, log *slog.Logger) (*pebble.DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	aside := fmt.Sprintf("%s.damaged-%s", dir, time.Now().UTC().Format("20060102T150405.000000000Z"))
	if rerr := fs.Rename(dir, aside); rerr != nil {
		return nil, fmt.Errorf("%w (and moving it aside failed: %v; move %s away by hand and restart)", cause, rerr, dir)
	}
	log.Error("agent store damaged: Pebble cannot read it; moved aside and starting from an empty store (check the disk under --state: a failing card or a file system shut down uncleanly)",
		"store", dir, "movedTo", aside, "err", cause)
	return openDB(dir, fs)
}

// checkStore compares the store as opened with the mark left by the last
// run. If the store ends before the mark (records lost from its
// write-ahead log, or a store replaced by an empty one), it logs at error
// level what was lost, with counts and what to do, and returns the clock
// state to go on with: a new writer incarnation, so that the events it
// writes from now on cannot collide with the lost ones on the log, and a
// time floor no lower than the mark's.
func checkStore(snap *snapshot, stateDir string, replaced bool, log *slog.Logger) (lost bool) {
	m, ok := readMark(stateDir)
	if !ok {
		return false
	}
	have := snap.outboxNext - 1
	behind := m.Durable > have || (m.Writer == snap.clock.Writer && m.Seq > snap.clock.Seq)
	if !behind && !replaced {
		return false
	}
	missing := uint64(0)
	if m.Durable > have {
		missing = m.Durable - have
	}
	published := uint64(0)
	if m.Acked > have {
		published = min(m.Acked, m.Durable) - have
	}
	log.Error("agent store damaged: events it had recorded and synced are missing (its write-ahead log was truncated or damaged); going on with what is left: every resource is observed again and its state recorded anew (check the disk under --state; if it happens again, replace the storage)",
		"missing", missing, "reachedLog", published, "lostForGood", missing-published,
		"outboxFrom", have+1, "outboxTo", m.Durable, "writerSeqWas", m.Seq, "writerSeqNow", snap.clock.Seq,
		"storeReplaced", replaced)
	snap.clock.Writer, snap.clock.Seq = events.NewWriter(), 0
	if m.LastAt.After(snap.clock.LastAt) {
		snap.clock.LastAt = m.LastAt
	}
	// Outbox sequences go on after the mark's: the lost ones are not reused.
	snap.outboxNext = max(snap.outboxNext, m.Durable+1)
	return true
}
