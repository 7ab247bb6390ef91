package timetravel

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// A damaged index is the runtime's to recover (projections.Service: Open
// starts an empty store beside the damaged one, deletes that, and
// Recovered says what it found); the index is derived from the log and is
// taken in again from sequence 1.

// dropBareStore deletes an index written before the index ran on the read
// side's runtime: one Pebble store in dir itself, where the runtime keeps a
// CURRENT file and its stores in dir/models-*. It is derived from the log:
// the runtime takes the log in again.
func dropBareStore(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "CURRENT")); !errors.Is(err, os.ErrNotExist) {
		return nil // the runtime's (or unreadable: the runtime says why)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil // none yet
	}
	bare := false
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "OPTIONS-") || strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.") {
			bare = true
		}
	}
	if !bare {
		return nil
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("time-travel index %s: delete the index of the layout before %s: %w (delete %s by hand: it is taken in again from the log)",
				dir, "models-*", err, dir)
		}
	}
	return nil
}
