package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
)

// BenchmarkFileApply applies 1,000 file resources per iteration, each with
// new content (so every apply writes: temp file, fsync, rename, dir fsync),
// then applies them again converged (observe only). Beside it, the raw cost
// of the same durable write done by hand (write, fsync, rename, dir fsync)
// in the same run.
//
//	go test -run '^$' -bench BenchmarkFileApply -benchtime 3x ./agent/reconcile/
func BenchmarkFileApply(b *testing.B) {
	const n = 1000
	root := b.TempDir()
	r := reconcile.NewFile(root)
	ctx := context.Background()
	targets := make([]reconcile.Target, n)
	var changedDur, convergedDur, rawDur time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		for j := range targets {
			targets[j] = fileTarget(fmt.Sprintf("f%d", j), fmt.Sprintf("/etc/fleet/d%d/f%d.conf", j%10, j), fmt.Sprintf("content %d of %d\n", i, j))
			res, err := r.Apply(ctx, targets[j])
			if err != nil || !res.Changed {
				b.Fatal(err, res.Changed)
			}
		}
		changedDur += time.Since(start)
		start = time.Now()
		for _, tg := range targets {
			if res, err := r.Apply(ctx, tg); err != nil || res.Changed {
				b.Fatal(err, res.Changed)
			}
		}
		convergedDur += time.Since(start)
		start = time.Now()
		for j := range n {
			dir := filepath.Join(root, "raw", fmt.Sprintf("d%d", j%10))
			if err := rawWrite(dir, fmt.Sprintf("f%d.conf", j), fmt.Sprintf("content %d of %d\n", i, j)); err != nil {
				b.Fatal(err)
			}
		}
		rawDur += time.Since(start)
	}
	files := float64(b.N * n)
	b.ReportMetric(files/changedDur.Seconds(), "applies/s")
	b.ReportMetric(files/convergedDur.Seconds(), "converged-applies/s")
	b.ReportMetric(files/rawDur.Seconds(), "raw-durable-writes/s")
}

// BenchmarkFileApplyBatch applies 1,000 file resources per iteration in one
// ApplyBatch, each with new content, beside the raw floor in the same run:
// the same 1,000 durable replaces done by hand with the same parallelism
// (16 workers: temp file, write, fsync, rename; then one fsync per
// directory). Both rewrite every file each iteration.
//
//	go test -run '^$' -bench BenchmarkFileApplyBatch -benchtime 5x ./agent/reconcile/
func BenchmarkFileApplyBatch(b *testing.B) {
	const n, workers = 1000, 16
	root := b.TempDir()
	r := reconcile.NewFile(root)
	ctx := context.Background()
	targets := make([]reconcile.Target, n)
	var batchDur, rawDur time.Duration
	for i := 0; b.Loop(); i++ {
		for j := range targets {
			targets[j] = fileTarget(fmt.Sprintf("f%d", j), fmt.Sprintf("/etc/fleet/d%d/f%d.conf", j%10, j), fmt.Sprintf("content %d of %d\n", i, j))
		}
		start := time.Now()
		for _, res := range r.ApplyBatch(ctx, targets) {
			if res.Err != nil || !res.Changed {
				b.Fatal(res.Err, res.Changed)
			}
		}
		batchDur += time.Since(start)

		start = time.Now()
		dirs := map[string]bool{}
		for j := range n {
			dir := filepath.Join(root, "raw", fmt.Sprintf("d%d", j%10))
			dirs[dir] = true
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		next := make(chan int)
		errs := make(chan error, n)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range next {
					dir := filepath.Join(root, "raw", fmt.Sprintf("d%d", j%10))
					errs <- rawReplace(dir, fmt.Sprintf("f%d.conf", j), fmt.Sprintf("content %d of %d\n", i, j))
				}
			}()
		}
		for j := range n {
			next <- j
		}
		close(next)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		for dir := range dirs {
			if err := syncDirByHand(dir); err != nil {
				b.Fatal(err)
			}
		}
		rawDur += time.Since(start)
	}
	b.ReportMetric(batchDur.Seconds()/float64(b.N)*1000, "batch-ms/1000")
	b.ReportMetric(rawDur.Seconds()/float64(b.N)*1000, "raw-ms/1000")
	b.ReportMetric(rawDur.Seconds()/batchDur.Seconds(), "batch/raw-speed")
}

// rawReplace writes a temp file, fsyncs it and renames it over name.
func rawReplace(dir, name, content string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func syncDirByHand(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// rawWrite is the durable replace done by hand, the floor for Apply.
func rawWrite(dir, name, content string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := rawReplace(dir, name, content); err != nil {
		return err
	}
	return syncDirByHand(dir)
}

// BenchmarkFileApplyBatchSpares is BenchmarkFileApplyBatch with spares kept
// ready (File.KeepSpares): each iteration waits, untimed, for the spares'
// background work of the one before, then applies 1,000 changed files.
//
//	go test -run '^$' -bench BenchmarkFileApplyBatchSpares -benchtime 5x ./agent/reconcile/
func BenchmarkFileApplyBatchSpares(b *testing.B) {
	const n = 1000
	root := b.TempDir()
	r := reconcile.NewFile(root)
	if err := r.KeepSpares(filepath.Join(b.TempDir(), "spares")); err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	targets := make([]reconcile.Target, n)
	apply := func(v string) time.Duration {
		for j := range targets {
			targets[j] = fileTarget(fmt.Sprintf("f%d", j), fmt.Sprintf("/etc/fleet/d%d/f%d.conf", j%10, j), fmt.Sprintf("content %s of %d\n", v, j))
		}
		r.WaitSpares()
		start := time.Now()
		for _, res := range r.ApplyBatch(ctx, targets) {
			if res.Err != nil || !res.Changed {
				b.Fatal(res.Err, res.Changed)
			}
		}
		return time.Since(start)
	}
	apply("first")
	var batchDur time.Duration
	for i := 0; b.Loop(); i++ {
		batchDur += apply(fmt.Sprint(i))
	}
	b.ReportMetric(batchDur.Seconds()/float64(b.N)*1000, "batch-ms/1000")
}
