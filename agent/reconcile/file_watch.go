package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchDebounce gathers a burst of notifications (an atomic write is a
// create, a write and a rename) into one call per resource.
const watchDebounce = 50 * time.Millisecond

// Watch reports file resources whose file may have changed, from fsnotify
// notifications on their parent directories (or the deepest existing
// ancestor while the parent is missing, moving down as directories appear).
// Each changed resource id is reported once per burst. Resources whose path
// is refused are not watched. It returns nil when ctx is done, or an error
// if notifications cannot be set up at all.
func (r *File) Watch(ctx context.Context, ts []Target, changed func(resourceID string)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch files: %w", err)
	}
	defer w.Close()

	// index maps a watched directory and a name in it to resource ids;
	// ancestors are the watched directories that stand in for a missing
	// parent (a directory created there may be on a watched path).
	var index map[string]map[string][]string
	var ancestors map[string]bool
	watched := map[string]bool{}
	rewatch := func() {
		index = map[string]map[string][]string{}
		ancestors = map[string]bool{}
		res, err := newResolver(r.root)
		if err != nil {
			return
		}
		for _, t := range ts {
			if t.Resource.File == nil {
				continue
			}
			p, err := res.resolve(t.Resource.File.Path)
			if err != nil {
				continue
			}
			dir, name := existingAncestor(p.dir), p.name
			if dir != p.dir {
				ancestors[dir] = true
				rel, err := filepath.Rel(dir, p.dir)
				if err != nil {
					continue
				}
				name = strings.Split(rel, string(filepath.Separator))[0]
			}
			if !watched[dir] {
				if err := w.Add(dir); err != nil {
					continue
				}
				watched[dir] = true
			}
			if index[dir] == nil {
				index[dir] = map[string][]string{}
			}
			index[dir][name] = append(index[dir][name], t.Resource.ID)
		}
	}
	rewatch()

	pending := map[string]bool{}
	stale := false // directories appeared or went: set the watches up again
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if watched[ev.Name] && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				delete(watched, ev.Name) // the kernel dropped this watch
				stale = true
			}
			dir := filepath.Dir(ev.Name)
			if ancestors[dir] && ev.Has(fsnotify.Create|fsnotify.Rename) {
				stale = true
			}
			ids := index[dir][filepath.Base(ev.Name)]
			for _, id := range ids {
				pending[id] = true
			}
			if len(ids) > 0 || stale {
				timer.Reset(watchDebounce)
			}
		case <-w.Errors:
			// Overflow or a vanished directory: check everything.
			for _, t := range ts {
				pending[t.Resource.ID] = true
			}
			stale = true
			timer.Reset(watchDebounce)
		case <-timer.C:
			ids := make([]string, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			clear(pending)
			if stale {
				stale = false
				rewatch()
			}
			for _, id := range ids {
				changed(id)
			}
		}
	}
}

// existingAncestor returns dir or its deepest ancestor that exists.
func existingAncestor(dir string) string {
	for {
		_, err := os.Lstat(dir)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
