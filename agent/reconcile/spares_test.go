package reconcile_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/matryer/is"
	"golang.org/x/sys/unix"

	"github.com/fleet-dev/fleet/agent/reconcile"
)

func newFileWithSpares(t *testing.T) (*reconcile.File, string, string) {
	t.Helper()
	root, spares := t.TempDir(), filepath.Join(t.TempDir(), "spares")
	f := reconcile.NewFile(root)
	if err := f.KeepSpares(spares); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, root, spares
}

// applyAll applies ts as one batch and fails t on any error.
func applyAll(t *testing.T, f *reconcile.File, ts []reconcile.Target) {
	t.Helper()
	for _, r := range f.ApplyBatch(context.Background(), ts) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestSparesSwapInNewVersionsAndKeepOpenReadersIntact: once spares are
// ready, a changed file is written into one and swapped into place: the path
// holds the new version (a new inode, mode and content right), the old
// version is deleted later, and a process that had it open still reads it
// whole.
func TestSparesSwapInNewVersionsAndKeepOpenReadersIntact(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f, root, spares := newFileWithSpares(t)
	var v1, v2 []reconcile.Target
	for i := range 20 {
		v1 = append(v1, fileTarget(fmt.Sprintf("f%d", i), fmt.Sprintf("/etc/app/f%d.conf", i), fmt.Sprintf("one %d\n", i)))
		v2 = append(v2, fileTarget(fmt.Sprintf("f%d", i), fmt.Sprintf("/etc/app/f%d.conf", i), fmt.Sprintf("two %d\n", i)))
	}
	applyAll(t, f, v1)
	f.WaitSpares() // 20 spares ready
	path0 := filepath.Join(root, "etc/app/f0.conf")
	before := inode(t, path0)
	reader, err := os.Open(path0)
	is.NoErr(err)
	defer reader.Close()

	used0, _ := f.SparesUsed()
	for _, r := range f.ApplyBatch(ctx, v2) {
		is.NoErr(r.Err)
		is.True(r.Changed)
	}
	used, _ := f.SparesUsed()
	is.Equal(used-used0, 20) // every write took a spare
	for i := range 20 {
		b, err := os.ReadFile(filepath.Join(root, fmt.Sprintf("etc/app/f%d.conf", i)))
		is.NoErr(err)
		is.Equal(string(b), fmt.Sprintf("two %d\n", i))
	}
	is.True(inode(t, path0) != before) // a new inode, as with a rename
	var st syscall.Stat_t
	is.NoErr(syscall.Stat(path0, &st))
	is.Equal(st.Mode&0o7777, uint32(0o644))
	f.WaitSpares()
	old, err := os.ReadDir(filepath.Join(spares, "old"))
	is.NoErr(err)
	is.Equal(len(old), 0) // the old versions are deleted
	b, err := io.ReadAll(reader)
	is.NoErr(err)
	is.Equal(string(b), "one 0\n") // the open reader still has the old version, whole
	ents, err := os.ReadDir(filepath.Join(root, "etc/app"))
	is.NoErr(err)
	is.Equal(len(ents), 20) // nothing else left beside the files
	for _, r := range f.ApplyBatch(ctx, v2) {
		is.NoErr(r.Err)
		is.True(!r.Changed) // idempotent
	}
}

// TestSparesLeftByACrashAreRetired: what a previous run left in the spare
// directory (ready spares, old versions not yet deleted) is deleted when the
// reconciler starts again, and files in place are untouched.
func TestSparesLeftByACrashAreRetired(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	root, spares := t.TempDir(), filepath.Join(t.TempDir(), "spares")
	f := reconcile.NewFile(root)
	is.NoErr(f.KeepSpares(spares))
	tg := fileTarget("a", "/etc/a.conf", "a\n")
	_, err := f.Apply(ctx, tg)
	is.NoErr(err)
	f.WaitSpares()
	is.NoErr(f.Close()) // as if killed: spares stay on disk
	is.NoErr(os.WriteFile(filepath.Join(spares, "fresh", "leftover"), []byte("old version"), 0o644))

	f2 := reconcile.NewFile(root)
	is.NoErr(f2.KeepSpares(spares))
	defer f2.Close()
	f2.WaitSpares()
	fresh, err := os.ReadDir(filepath.Join(spares, "fresh"))
	is.NoErr(err)
	is.Equal(len(fresh), 0) // nothing of the last run is reused
	old, err := os.ReadDir(filepath.Join(spares, "old"))
	is.NoErr(err)
	is.Equal(len(old), 0) // and it is deleted
	b, err := os.ReadFile(filepath.Join(root, "etc/a.conf"))
	is.NoErr(err)
	is.Equal(string(b), "a\n")
}

// TestDirectoryInPlaceIsRefusedWithSparesReady: a directory put where a
// file was, after spares are ready, is refused as without spares (by the
// plan), and left as it is. (A directory that appears after the plan is
// swapped back: TestSwapPutsBackWhatIsNotAFile.)
func TestDirectoryInPlaceIsRefusedWithSparesReady(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	f, root, _ := newFileWithSpares(t)
	_, err := f.Apply(ctx, fileTarget("a", "/etc/a.conf", "a\n"))
	is.NoErr(err)
	f.WaitSpares()
	p := filepath.Join(root, "etc/a.conf")
	is.NoErr(os.Remove(p))
	is.NoErr(os.Mkdir(p, 0o755))
	is.NoErr(os.WriteFile(filepath.Join(p, "keep"), []byte("k"), 0o644))
	_, err = f.Apply(ctx, fileTarget("a", "/etc/a.conf", "b\n"))
	is.True(err != nil)
	f.WaitSpares()
	b, err := os.ReadFile(filepath.Join(p, "keep"))
	is.NoErr(err)
	is.Equal(string(b), "k")
}

// TestSparesAvoidDirectoriesWithADefaultACL: a file created in a directory
// with a default ACL inherits it, a spare made elsewhere would not: such a
// directory gets its files through temp files created in it.
func TestSparesAvoidDirectoriesWithADefaultACL(t *testing.T) {
	is := is.New(t)
	f, root, _ := newFileWithSpares(t)
	dir := filepath.Join(root, "etc/acl")
	is.NoErr(os.MkdirAll(dir, 0o755))
	// A default ACL in the kernel's xattr form: version 2, then
	// user::rwx, user:1234:rw-, group::r-x, mask::rwx, other::r-x (tag,
	// permissions, id).
	acl := []byte{2, 0, 0, 0,
		0x01, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
		0x02, 0, 6, 0, 0xd2, 0x04, 0, 0,
		0x04, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff}
	is.NoErr(unix.Setxattr(dir, "system.posix_acl_default", acl, 0))
	ts := []reconcile.Target{fileTarget("a", "/etc/acl/a.conf", "1\n"), fileTarget("b", "/etc/plain/b.conf", "1\n")}
	applyAll(t, f, ts)
	f.WaitSpares()
	used0, _ := f.SparesUsed()
	ts = []reconcile.Target{fileTarget("a", "/etc/acl/a.conf", "2\n"), fileTarget("b", "/etc/plain/b.conf", "2\n")}
	applyAll(t, f, ts)
	used, _ := f.SparesUsed()
	is.Equal(used-used0, 1) // the plain directory's file only
	_, err := unix.Getxattr(filepath.Join(dir, "a.conf"), "system.posix_acl_access", nil)
	is.NoErr(err) // the file in the ACL directory inherited it
}

// TestSparesStayOnTheirMount: files under a bind mount of the spares' own
// file system (where a rename cannot go) are written through temp files,
// and still converge.
func TestSparesStayOnTheirMount(t *testing.T) {
	is := is.New(t)
	f, root, _ := newFileWithSpares(t)
	src, dst := t.TempDir(), filepath.Join(root, "etc/bound")
	is.NoErr(os.MkdirAll(dst, 0o755))
	if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount (%v: %s): run as root to test a mount boundary", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dst).Run() })
	ts := []reconcile.Target{fileTarget("a", "/etc/bound/a.conf", "1\n")}
	applyAll(t, f, ts)
	f.WaitSpares()
	ts = []reconcile.Target{fileTarget("a", "/etc/bound/a.conf", "2\n")}
	used0, _ := f.SparesUsed()
	applyAll(t, f, ts)
	used, _ := f.SparesUsed()
	var stx unix.Statx_t
	is.NoErr(unix.Statx(unix.AT_FDCWD, dst, 0, unix.STATX_MNT_ID, &stx))
	if stx.Mask&unix.STATX_MNT_ID != 0 && stx.Mnt_id != 0 {
		is.Equal(used, used0) // no spare crossed the mount
	} else {
		// No mount id from this kernel (before Linux 5.8), or a zero one
		// (qemu-user's emulation sets the mask but not the field): the bind mount looks like the spares' own file system,
		// so one spare is tried, meets the rename boundary and the write is
		// redone through a temp file in the same call.
		t.Log("statx gives no mount id here: a spare meets the boundary and the write falls back")
		is.True(used-used0 <= 1)
	}
	b, err := os.ReadFile(filepath.Join(src, "a.conf"))
	is.NoErr(err)
	is.Equal(string(b), "2\n")
}
