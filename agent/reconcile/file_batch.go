package reconcile

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fleet-dev/fleet/events"
)

// batchWorkers bounds the file system calls ApplyBatch runs at once: enough
// to keep a disk's queue full while some wait for fsync.
const batchWorkers = 16

// parallel calls f(0) ... f(n-1) on up to batchWorkers goroutines.
func parallel(n int, f func(i int)) {
	w := min(n, batchWorkers)
	if w <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan int)
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// ApplyBatch implements BatchApplier. Each target is planned as Apply plans
// it (one observation); then, in parallel, every content change is written
// to a spare (or a temp file beside its path) and fsynced, and every owner/mode change is
// made in place and fsynced; then the new versions are swapped or renamed into place and
// each directory that received one is fsynced once; then every changed file
// is observed again. A target is reported converged only after that last
// observation (or, unchanged, after the first) found no difference.
// Safe for concurrent use on different resources.
func (r *File) ApplyBatch(ctx context.Context, ts []Target) []BatchResult {
	out := make([]BatchResult, len(ts))
	res, err := newResolver(r.root)
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	plans := make([]filePlan, len(ts))
	vs := make([]*version, len(ts)) // the content writes
	var wanted atomic.Int64         // writes a spare suits: keep as many ready
	defer func() { r.spares.ensure(int(wanted.Load())) }()
	var mkdirs sync.Map // directory → *dirOnce
	parallel(len(ts), func(i int) {
		pl, err := r.plan(ctx, ts[i], res)
		plans[i] = pl
		if err != nil || len(pl.diffs) == 0 {
			out[i].Err = err
			return
		}
		if pl.diffs[0].Field != "content" {
			out[i].Err = pl.fixInPlace()
			out[i].Changed = out[i].Err == nil
			return
		}
		d, _ := mkdirs.LoadOrStore(pl.p.dir, &dirOnce{})
		if err := d.(*dirOnce).do(func() error { return mkdirUnder(r.root, pl.p) }); err != nil {
			out[i].Err = err
			return
		}
		if r.spares.suits(pl.p.dir) {
			wanted.Add(1)
		}
		v := pl.version(r.spares)
		if err := v.write(); err != nil {
			out[i].Err = fmt.Errorf("file %s: %w", pl.spec.Path, err)
			return
		}
		vs[i] = v
	})

	// Renames, then one fsync per directory that got one.
	var written []int
	for i, v := range vs {
		if v != nil {
			written = append(written, i)
		}
	}
	if err := ctx.Err(); err != nil {
		for _, i := range written {
			vs[i].discard()
			out[i].Err = err
		}
		return out
	}
	var mu sync.Mutex
	dirs := map[string][]int{}
	parallel(len(written), func(k int) {
		i := written[k]
		pl := plans[i]
		if err := vs[i].install(); err != nil {
			out[i].Err = fmt.Errorf("file %s: %w", pl.spec.Path, err)
			return
		}
		mu.Lock()
		dirs[pl.p.dir] = append(dirs[pl.p.dir], i)
		mu.Unlock()
	})

	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	parallel(len(dirList), func(k int) {
		if err := syncDir(dirList[k]); err != nil {
			for _, i := range dirs[dirList[k]] {
				out[i].Err = fmt.Errorf("file %s: %w", plans[i].spec.Path, err)
			}
			return
		}
		for _, i := range dirs[dirList[k]] {
			out[i].Changed = true
		}
	})

	// Observe what changed. A file still being the inode written, fsynced
	// and renamed above, unchanged since (size, mtime, mode, owner), holds
	// the content written: the stat is the observation. Anything else is
	// observed in full.
	parallel(len(ts), func(i int) {
		if !out[i].Changed || out[i].Err != nil {
			return
		}
		pl := plans[i]
		if vs[i] != nil && stillAt(pl.p.full(), vs[i].id) {
			return
		}
		have, err := observeFile(pl.p.full())
		switch {
		case err != nil:
			out[i].Err = fmt.Errorf("observe after apply: %w", err)
		default:
			if d := pl.w.differences(pl.spec, have); len(d) > 0 {
				out[i].Err = fmt.Errorf("still differs after apply: %s", describeDiffs(d))
			}
		}
	})
	return out
}

// dirOnce creates a directory once per batch and remembers the outcome.
type dirOnce struct {
	once sync.Once
	err  error
}

func (d *dirOnce) do(f func() error) error {
	d.once.Do(func() { d.err = f() })
	return d.err
}

// describeDiffs renders differences for an error text.
func describeDiffs(diffs []events.Difference) string {
	parts := make([]string, len(diffs))
	for i, d := range diffs {
		parts[i] = fmt.Sprintf("%s: want %q, have %q", d.Field, d.Expected, d.Observed)
	}
	return strings.Join(parts, "; ")
}

var _ BatchApplier = (*File)(nil)
