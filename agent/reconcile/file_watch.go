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

	// index maps a watched directory and a name in it to resource ids.
	var index map[string]map[string][]string
	watched := map[string]bool{}
	rewatch := func() {
		index = map[string]map[string][]string{}
		for _, t := range ts {
			if t.Resource.File == nil {
				continue
			}
			p, err := resolveUnder(r.root, t.Resource.File.Path)
			if err != nil {
				continue
			}
			dir, name := existingAncestor(p.dir), p.name
			if dir != p.dir {
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
			}
			for _, id := range index[filepath.Dir(ev.Name)][filepath.Base(ev.Name)] {
				pending[id] = true
			}
			timer.Reset(watchDebounce)
		case <-w.Errors:
			// Overflow or a vanished directory: check everything.
			for _, t := range ts {
				pending[t.Resource.ID] = true
			}
			timer.Reset(watchDebounce)
		case <-timer.C:
			ids := make([]string, 0, len(pending))
			for id := range pending {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			clear(pending)
			rewatch() // directories may have appeared or gone
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
