package timetravel_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// TestDamagedIndexIsRebuiltFromTheLog: bytes flipped in the index's tables
// do not block start-up: Open says what it found and starts empty, Follow
// takes the log in again from sequence 1, and the answers are those of the
// full fold, as before the damage.
func TestDamagedIndexIsRebuiltFromTheLog(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Events: 2000, OfflineRate: 0.05})
	log := loadLog(t, env, evs)
	dir := t.TempDir()
	x, stop := startIndex(t, env, dir, 32)
	waitFor(t, x, 2000)
	stop()

	// flush to tables and flip 64 bytes in the middle of each (the
	// runtime's store: dir/CURRENT names it)
	cur, err := os.ReadFile(filepath.Join(dir, "CURRENT"))
	is.NoErr(err)
	store := filepath.Join(dir, strings.TrimSpace(string(cur)))
	db, err := pebble.Open(store, &pebble.Options{Logger: silent{}})
	is.NoErr(err)
	is.NoErr(db.Flush())
	is.NoErr(db.Close())
	tables, _ := filepath.Glob(filepath.Join(store, "*.sst"))
	is.True(len(tables) > 0)
	for _, f := range tables {
		b, err := os.ReadFile(f)
		is.NoErr(err)
		for i := len(b) / 2; i < len(b)/2+64 && i < len(b); i++ {
			b[i] ^= 0xff
		}
		is.NoErr(os.WriteFile(f, b, 0o644))
	}

	x, stop = startIndex(t, env, dir, 32)
	defer stop()
	t.Log(x.Recovered())
	is.True(strings.Contains(x.Recovered(), "damaged"))
	is.True(strings.Contains(x.Recovered(), timetravel.Name))
	waitFor(t, x, 2000)
	answersAsTheFullFold(t, x, log, []int{0, 700, 1400, 1999}, "pi-001", "pi-002", "pi-003")
}

type silent struct{}

func (silent) Infof(string, ...any)  {}
func (silent) Errorf(string, ...any) {}
func (silent) Fatalf(format string, args ...any) {
	panic(format)
}

// TestIndexOfTheLayoutBeforeTheRuntimeIsTakenInAgain: an index written
// before it ran on the runtime (one Pebble store in its directory itself)
// is deleted on Open, and the log is taken in again into the runtime's
// store.
func TestIndexOfTheLayoutBeforeTheRuntimeIsTakenInAgain(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	log := loadLog(t, env, fixtures.GenerateLog(3, fixtures.Options{Devices: 2, Events: 300}))
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{Logger: silent{}})
	is.NoErr(err)
	is.NoErr(db.Set([]byte("c"), []byte{0, 0, 0, 0, 0, 0, 0, 200}, pebble.Sync))
	is.NoErr(db.Close())

	x, stop := startIndex(t, env, dir, 32)
	defer stop()
	waitFor(t, x, uint64(len(log)))
	old, _ := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
	is.Equal(len(old), 0) // the old store is gone
	_, _, st, err := x.Answer(timetravel.Query{Device: "pi-001"})
	is.NoErr(err)
	is.Equal(st.Events, countDevice(log, "pi-001")) // taken in from sequence 1, not from the old checkpoint
}
