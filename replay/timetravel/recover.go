package timetravel

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"
)

// errDamagedRecord: the index's store opened but what it holds does not
// load (a record or key that does not decode, positions out of order).
var errDamagedRecord = errors.New("time-travel index records damaged")

// damagedIndex reports whether err from opening the index says its store
// is damaged rather than unreachable (permissions, a lock, a full disk).
func damagedIndex(err error) bool {
	return pebble.IsCorruptionError(err) || errors.Is(err, errDamagedRecord)
}

// reopenEmpty deletes the damaged index in dir and opens an empty one.
func reopenEmpty(dir string, cause error, opts ...Option) (*Index, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("%w (and deleting it failed: %v; delete %s by hand, it is rebuilt from the log)", cause, err, dir)
	}
	x, err := open(dir, opts...)
	if err != nil {
		return nil, fmt.Errorf("time-travel index %s damaged (%v), and a new one failed: %w", dir, cause, err)
	}
	x.recovered = fmt.Sprintf("time-travel index %s was damaged (%v): started empty, taken in again from the log from sequence 1", dir, cause)
	return x, nil
}

// Recovered returns, if Open found the index damaged and started it empty,
// what it found; "" otherwise. Until Follow has caught up, answers cover
// only the part of the log taken in so far (Checkpoint).
func (x *Index) Recovered() string { return x.recovered }
