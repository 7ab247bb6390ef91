package projections

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// removeOthers deletes models directories other than the current one: left
// by a rebuild that did not finish, or by an older layout.
func removeOthers(dir, current string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "models-") && e.Name() != current {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func writeCurrent(dir, name string) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("projections store: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return fmt.Errorf("projections store: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

var errOldLayout = errors.New("read models written with another key layout")

// openModels opens a store and loads its folds. With errOldLayout the
// returned models are open but hold data of another layout.
func openModels(dir string, kinds modelSet) (*models, error) {
	db, err := OpenStoreNamed(kinds.name, dir)
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", kinds.name, dir, err)
	}
	m := &models{dir: dir, db: db, kinds: kinds, dirty: Dirty{}}
	cp, err := get(db, keyCheckpoint)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	v, err := get(db, keyLayout)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read layout: %w", err)
	}
	if cp != nil && string(v) != kinds.layout {
		return m, errOldLayout
	}
	if len(cp) == 8 {
		m.checkpoint = binary.BigEndian.Uint64(cp)
	}
	m.applied = m.checkpoint
	if err := m.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("load %s %s: %w", kinds.name, dir, err)
	}
	return m, nil
}

func get(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return slices.Clone(v), nil
}

// load makes the read models afresh and reads them from Pebble: model by
// model, kind by kind in the order each model lists its kinds (a
// RecordModel loads its records itself).
func (m *models) load() error {
	m.set = m.kinds.fresh()
	m.recs = m.records()
	for _, rm := range m.set {
		for _, kind := range []byte(rm.Kinds()) {
			m.byKind[kind] = rm
		}
		if r, ok := rm.(RecordModel); ok {
			if err := m.loadRecords(r); err != nil { // records.go
				return err
			}
			continue
		}
		for _, kind := range []byte(rm.Kinds()) {
			it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte{kind, '/'}, UpperBound: []byte{kind, '0'}})
			if err != nil {
				return err
			}
			for it.First(); it.Valid(); it.Next() {
				p, err := parsePart(it.Key())
				if err == nil {
					err = rm.Load(p, slices.Clone(it.Value()))
				}
				if err != nil {
					it.Close()
					return fmt.Errorf("%w: %w", errBadPart, err)
				}
			}
			if err := it.Close(); err != nil {
				return err
			}
		}
	}
	return nil
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// devices lists every device any of the models holds a part of, sorted.
func (m *models) devices() []string {
	seen := map[string]struct{}{}
	var out []string
	for _, rm := range m.set {
		rm.Parts(func(p Part) {
			if _, ok := seen[p.Device]; !ok {
				seen[p.Device] = struct{}{}
				out = append(out, p.Device)
			}
		})
	}
	slices.Sort(out)
	return out
}
