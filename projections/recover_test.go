package projections

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// flipTables flushes the Pebble store in dir to its tables and flips 64
// bytes in the middle of each.
func flipTables(t *testing.T, dir string) int {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range tables {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return len(tables)
}

// TestDamagedReadModelsAreRebuiltFromTheLog: bytes flipped in the read
// models' store do not block the service: Open says what it found, starts
// from an empty store, and the service folds the log again to the same
// read models.
func TestDamagedReadModelsAreRebuiltFromTheLog(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(5, fixtures.Options{Devices: 4, Events: 3000})
	last := appendLog(t, env, evs, false)
	dir := t.TempDir()
	s, err := Open(dir)
	is.NoErr(err)
	runService(t, s, env.Store, last)
	want := serviceModels(s)
	is.NoErr(s.Close())

	cur, err := os.ReadFile(filepath.Join(dir, currentFile))
	is.NoErr(err)
	is.True(flipTables(t, filepath.Join(dir, strings.TrimSpace(string(cur)))) > 0)

	s, err = Open(dir)
	is.NoErr(err) // not blocked by the damage
	t.Log(s.Recovered())
	is.True(strings.Contains(s.Recovered(), "damaged"))
	is.Equal(s.Checkpoint(), uint64(0))
	runService(t, s, env.Store, last)
	is.Equal(string(serviceModels(s)), string(want)) // answers the same
	is.Equal(string(want), string(readModels(stored(evs))))
	is.NoErr(s.Close())

	s, err = Open(dir) // the rebuilt store is the current one now
	is.NoErr(err)
	is.Equal(s.Recovered(), "")
	is.Equal(s.Checkpoint(), last)
	is.NoErr(s.Close())
}
