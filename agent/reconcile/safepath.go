package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// ReasonPathEscapesRoot is the refusal reason of a path outside the root.
const ReasonPathEscapesRoot = "PathEscapesRoot"

// rootedPath is a spec path placed under a root and checked to stay there.
type rootedPath struct {
	spec string // the path as the spec gives it
	dir  string // real parent directory (symlinks of existing ancestors resolved)
	name string // final component, never followed if it is a symlink
}

func (p rootedPath) full() string { return filepath.Join(p.dir, p.name) }

// underRoot reports whether p is root or inside it. Both must be clean.
func underRoot(root, p string) bool {
	if p == root {
		return true
	}
	if root == string(filepath.Separator) {
		return strings.HasPrefix(p, root)
	}
	return strings.HasPrefix(p, root+string(filepath.Separator))
}

// resolveUnder places specPath under root and checks that it stays there:
// after cleaning, and through every symlink among its existing ancestors
// (the deepest existing ancestor is resolved with filepath.EvalSymlinks and
// must lie within the resolved root). The final component is not resolved:
// callers never follow it. A path that escapes is a *RefusedError with
// reason PathEscapesRoot.
func resolveUnder(root, specPath string) (rootedPath, error) {
	res, err := newResolver(root)
	if err != nil {
		return rootedPath{}, err
	}
	return res.resolve(specPath)
}

// resolver is resolveUnder for many paths at one moment (a batch): the root
// is resolved once and each parent directory once. Safe for concurrent use.
type resolver struct {
	root, realRoot string
	mu             sync.Mutex
	dirs           map[string]string // parent directory → its resolution (successes only)
}

func newResolver(root string) (*resolver, error) {
	if root == "" {
		return nil, errors.New("no root configured")
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", root, err)
	}
	realRoot, err := filepath.EvalSymlinks(absRoot)
	if err != nil {
		return nil, fmt.Errorf("root %q: %w", root, err)
	}
	return &resolver{root: root, realRoot: realRoot, dirs: map[string]string{}}, nil
}

func (r *resolver) resolve(specPath string) (rootedPath, error) {
	refuse := func(format string, args ...any) (rootedPath, error) {
		return rootedPath{}, &RefusedError{Reason: ReasonPathEscapesRoot, Detail: fmt.Sprintf("path %q ", specPath) + fmt.Sprintf(format, args...)}
	}
	if specPath == "" || strings.ContainsRune(specPath, 0) {
		return refuse("is empty or contains a NUL byte")
	}
	root, realRoot := r.root, r.realRoot
	// Join cleans: "/../x" becomes a sibling of the root and is refused here.
	full := filepath.Join(realRoot, specPath)
	if full == realRoot || !underRoot(realRoot, full) {
		return refuse("leaves root %s after cleaning", root)
	}
	dir, name := filepath.Split(full)
	dir = filepath.Clean(dir)
	r.mu.Lock()
	resolved, ok := r.dirs[dir]
	r.mu.Unlock()
	if ok {
		return rootedPath{spec: specPath, dir: resolved, name: name}, nil
	}
	// Find the deepest existing ancestor of the final component.
	existing, rest := dir, ""
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return rootedPath{}, fmt.Errorf("stat %s: %w", existing, err)
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = filepath.Dir(existing)
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		// A dangling symlink among the ancestors: its target is unknown ground.
		return refuse("goes through %s, which cannot be resolved: %v", existing, err)
	}
	if !underRoot(realRoot, real) {
		return refuse("goes through a symlink to %s, outside root %s", real, root)
	}
	if fi, err := os.Stat(real); err == nil && !fi.IsDir() {
		return rootedPath{}, fmt.Errorf("path %q: %s is not a directory: %w", specPath, existing, syscall.ENOTDIR)
	}
	resolved = filepath.Join(real, rest)
	r.mu.Lock()
	r.dirs[dir] = resolved
	r.mu.Unlock()
	return rootedPath{spec: specPath, dir: resolved, name: name}, nil
}

// mkdirUnder creates p.dir and its parents, then checks again that what now
// exists resolves under root (a symlink swapped in meanwhile is refused).
func mkdirUnder(root string, p rootedPath) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create parent directories of %s: %w", p.spec, err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("root %q: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(p.dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", p.dir, err)
	}
	if !underRoot(realRoot, real) {
		return &RefusedError{Reason: ReasonPathEscapesRoot, Detail: fmt.Sprintf("path %q goes through a symlink to %s, outside root %s", p.spec, real, root)}
	}
	return nil
}
