package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
)

func manyTargets(n int, v string) []reconcile.Target {
	ts := make([]reconcile.Target, n)
	for i := range ts {
		ts[i] = fileTarget(fmt.Sprintf("f%d", i), fmt.Sprintf("/etc/d%d/f%d.conf", i%5, i), fmt.Sprintf("file %d %s\n", i, v))
	}
	return ts
}

func TestFileApplyBatchWritesEveryFileAndIsIdempotent(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	ctx := context.Background()
	ts := manyTargets(50, "v1")
	for i, res := range r.ApplyBatch(ctx, ts) {
		is.NoErr(res.Err)
		is.True(res.Changed) // a fresh device changes
		b, err := os.ReadFile(filepath.Join(root, ts[i].Resource.File.Path))
		is.NoErr(err)
		is.Equal(string(b), ts[i].Resource.File.Content)
		d, err := r.Observe(ctx, ts[i])
		is.NoErr(err)
		is.Equal(len(d), 0) // converged
	}
	for _, res := range r.ApplyBatch(ctx, ts) {
		is.NoErr(res.Err)
		is.True(!res.Changed) // applying converged resources changes nothing
	}
	for d := range 5 {
		entries, err := os.ReadDir(filepath.Join(root, fmt.Sprintf("etc/d%d", d)))
		is.NoErr(err)
		is.Equal(len(entries), 10) // no temp file left behind
	}
	ts2 := manyTargets(50, "v2")
	for _, res := range r.ApplyBatch(ctx, ts2) {
		is.NoErr(res.Err)
		is.True(res.Changed) // new content is written again
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/d3/f13.conf"))
	is.NoErr(err)
	is.Equal(string(b), "file 13 v2\n")
}

func TestFileApplyBatchFailuresStayWithTheirTarget(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	is.NoErr(os.MkdirAll(filepath.Join(root, "etc/dir-here/inner"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(root, "etc/mode-only"), []byte("same"), 0o600))
	r := reconcile.NewFile(root)
	ts := []reconcile.Target{
		fileTarget("good", "/etc/good", "good\n"),
		fileTarget("escape", "/../escaped", "pwned"),
		fileTarget("dir", "/etc/dir-here", "x"),
		fileTarget("mode", "/etc/mode-only", "same"),
		{Resource: fileTarget("nofile", "/x", "").Resource},
	}
	ts[4].Resource.File = nil
	out := r.ApplyBatch(context.Background(), ts)
	is.Equal(len(out), len(ts))
	is.NoErr(out[0].Err)
	is.True(out[0].Changed)
	is.Equal(readFile(t, filepath.Join(root, "etc/good")), "good\n")
	var re *reconcile.RefusedError
	is.True(errors.As(out[1].Err, &re)) // escape refused
	is.Equal(re.Reason, reconcile.ReasonPathEscapesRoot)
	is.True(out[2].Err != nil) // a directory is not replaced
	is.True(strings.Contains(out[2].Err.Error(), "not a regular file"))
	_, err := os.Stat(filepath.Join(root, "etc/dir-here/inner"))
	is.NoErr(err) // and still there
	is.NoErr(out[3].Err)
	is.True(out[3].Changed) // mode fixed in place
	fi, err := os.Stat(filepath.Join(root, "etc/mode-only"))
	is.NoErr(err)
	is.Equal(fi.Mode().Perm(), os.FileMode(0o644))
	is.True(out[4].Err != nil) // not a file resource
	_, err = os.Stat(filepath.Join(filepath.Dir(root), "escaped"))
	is.True(errors.Is(err, os.ErrNotExist)) // nothing written outside
}

func TestFileApplyBatchCancelledWritesNothing(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, res := range r.ApplyBatch(ctx, manyTargets(20, "v1")) {
		is.True(errors.Is(res.Err, context.Canceled))
		is.True(!res.Changed)
	}
	entries, err := os.ReadDir(root)
	is.NoErr(err)
	is.Equal(len(entries), 0) // no file, no directory, no temp file
}

func TestFileApplyBatchSetsModeAndSetuidBits(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	tg := fileTarget("s", "/bin/tool", "#!/bin/sh\n")
	tg.Resource.File.Mode = "4755"
	out := r.ApplyBatch(context.Background(), []reconcile.Target{tg})
	is.NoErr(out[0].Err)
	st := stat(t, filepath.Join(root, "bin/tool"))
	is.Equal(st.Mode&0o7777, uint32(0o4755))
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
