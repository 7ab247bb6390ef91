package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

// rawWrite is the durable replace done by hand, the floor for Apply.
func rawWrite(dir, name, content string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
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
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
