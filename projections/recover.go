package projections

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// errBadPart: a stored part of the read models does not decode.
var errBadPart = errors.New("read-model record does not decode")

// damaged reports whether err from opening the read models says the store
// is damaged (Pebble found corruption: a flipped byte in a table, its
// manifest or its log; or a record that does not decode), as opposed to
// the store being unreachable (permissions, a lock, a full disk), which
// rebuilding would not help.
func damaged(err error) bool {
	return err != nil && (pebble.IsCorruptionError(err) || errors.Is(err, errBadPart))
}

// rebuildDamaged starts the read models from an empty store in a new
// directory because the one named old is damaged (cause): the service then
// folds the whole log again from sequence 1, as a rebuild would, instead of
// refusing to start. The damaged directory is deleted once the new one is
// current (the models are derived from the log: nothing is lost). Recovered
// says what happened.
func (s *Service) rebuildDamaged(old string, cause error) (*models, string, error) {
	name := "models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	m, err := openModels(filepath.Join(s.dir, name), s.kinds)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s damaged (%v), and a new store failed: %w", s.name, old, cause, err)
	}
	if err := writeCurrent(s.dir, name); err != nil {
		m.db.Close()
		return nil, "", err
	}
	s.recovered = fmt.Sprintf("%s in %s %s damaged (%v): started from an empty store, folded again from the log from sequence 1",
		s.name, filepath.Join(s.dir, old), s.verb("were", "was"), cause)
	return m, name, nil
}

// Recovered returns, if Open found the store damaged and started the read
// models from the log again, what it found; "" otherwise. Until the
// service has caught up (Lag 0) the models answer for an earlier point of
// the log.
func (s *Service) Recovered() string { return s.recovered }
