package reconcile

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/matryer/is"
	"golang.org/x/sys/unix"

	"github.com/fleet-dev/fleet/events"
)

func target(path, content string) Target {
	return Target{Generation: 1, Resource: events.Resource{ID: "r", Kind: events.KindFile,
		File: &events.FileSpec{Path: path, Content: content}}}
}

// TestRetiredDirectoriesAreNeverDeletedRecursively: a directory found
// among retired files (swapped in by a race, a crash before it was put
// back) is left whole; files around it are deleted.
func TestRetiredDirectoriesAreNeverDeletedRecursively(t *testing.T) {
	is := is.New(t)
	dir := filepath.Join(t.TempDir(), "spares")
	sp, err := openSpares(dir)
	is.NoErr(err)
	sp.wait()
	// As a crash leaves it: a directory in fresh/, beside a spare.
	is.NoErr(os.MkdirAll(filepath.Join(dir, "fresh", "s1", "sub"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(dir, "fresh", "s1", "sub", "keep"), []byte("k"), 0o644))
	is.NoErr(os.WriteFile(filepath.Join(dir, "fresh", "s2"), nil, 0o644))
	sp.close()

	sp, err = openSpares(dir) // retires fresh/ whole, then deletes
	is.NoErr(err)
	sp.wait()
	defer sp.close()
	kept, err := filepath.Glob(filepath.Join(dir, "old", "fresh-*", "s1", "sub", "keep"))
	is.NoErr(err)
	is.Equal(len(kept), 1) // the directory and what is in it are still there
	gone, err := filepath.Glob(filepath.Join(dir, "old", "fresh-*", "s2"))
	is.NoErr(err)
	is.Equal(len(gone), 0) // the spare beside it is deleted
}

// TestSetgidDirectoriesGetTheirFilesThroughTempFiles: a file created in a
// setgid directory takes the directory's group; a spare would not.
func TestSetgidDirectoriesGetTheirFilesThroughTempFiles(t *testing.T) {
	is := is.New(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory another group")
	}
	root := t.TempDir()
	f := NewFile(root)
	is.NoErr(f.KeepSpares(filepath.Join(t.TempDir(), "spares")))
	defer f.Close()
	d := filepath.Join(root, "etc", "grp")
	is.NoErr(os.MkdirAll(d, 0o755))
	is.NoErr(os.Chown(d, 0, 4321))
	is.NoErr(syscall.Chmod(d, 0o2755))
	ctx := context.Background()
	_, err := f.Apply(ctx, target("/etc/other.conf", "1\n")) // a spare is made ready
	is.NoErr(err)
	f.WaitSpares()
	_, err = f.Apply(ctx, target("/etc/grp/a.conf", "new\n"))
	is.NoErr(err)
	var st syscall.Stat_t
	is.NoErr(syscall.Stat(filepath.Join(d, "a.conf"), &st))
	is.Equal(st.Gid, uint32(4321)) // the directory's group
	used, _ := f.SparesUsed()
	is.Equal(used, 0) // the ready spare was not used there
}

// TestADefaultACLOnTheStateDirectoryDoesNotReachManagedFiles: spares are
// made in a directory stripped of any default ACL the state directory has.
func TestADefaultACLOnTheStateDirectoryDoesNotReachManagedFiles(t *testing.T) {
	is := is.New(t)
	state := t.TempDir()
	acl := []byte{2, 0, 0, 0,
		0x01, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
		0x02, 0, 6, 0, 0xd2, 0x04, 0, 0,
		0x04, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff}
	is.NoErr(unix.Setxattr(state, "system.posix_acl_default", acl, 0))
	root := t.TempDir()
	f := NewFile(root)
	is.NoErr(f.KeepSpares(filepath.Join(state, "spares")))
	defer f.Close()
	ctx := context.Background()
	_, err := f.Apply(ctx, target("/etc/a.conf", "1\n"))
	is.NoErr(err)
	f.WaitSpares()
	_, err = f.Apply(ctx, target("/etc/a.conf", "2\n"))
	is.NoErr(err)
	used, _ := f.SparesUsed()
	is.Equal(used, 1)
	_, err = unix.Getxattr(filepath.Join(root, "etc/a.conf"), "system.posix_acl_access", nil)
	is.True(err != nil) // no ACL came with the spare
}

// TestASpareThatCannotCrossIsRewrittenThroughATempFile: where a rename is
// refused (EXDEV) although the mount check passed, the same write is done
// again through a temp file, and the directory is not tried again.
func TestASpareThatCannotCrossIsRewrittenThroughATempFile(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	f := NewFile(root)
	is.NoErr(f.KeepSpares(filepath.Join(t.TempDir(), "spares")))
	defer f.Close()
	src, dst := t.TempDir(), filepath.Join(root, "etc", "bound")
	is.NoErr(os.MkdirAll(dst, 0o755))
	if out, err := exec.Command("mount", "--bind", src, dst).CombinedOutput(); err != nil {
		t.Skipf("cannot bind-mount (%v: %s): run as root to test a rename boundary", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dst).Run() })
	ctx := context.Background()
	_, err := f.Apply(ctx, target("/etc/other.conf", "1\n")) // makes the pool want a spare
	is.NoErr(err)
	f.WaitSpares()
	f.spares.suitable.Store(dst, true) // as on a kernel without mount ids
	for _, r := range f.ApplyBatch(ctx, []Target{target("/etc/bound/a.conf", "1\n")}) {
		is.NoErr(r.Err) // crossed, retried through a temp file
	}
	b, err := os.ReadFile(filepath.Join(src, "a.conf"))
	is.NoErr(err)
	is.Equal(string(b), "1\n")
	ok, _ := f.spares.suitable.Load(dst)
	is.Equal(ok, false) // not tried again
}

// TestSwapPutsBackWhatIsNotAFile: if what is in place is no longer a
// regular file when the swap happens (a directory made there after the
// plan observed a file), the swap is undone: the directory is back at its
// path with what it holds, and the error says why.
func TestSwapPutsBackWhatIsNotAFile(t *testing.T) {
	is := is.New(t)
	sp, err := openSpares(filepath.Join(t.TempDir(), "spares"))
	is.NoErr(err)
	defer sp.close()
	sp.ensure(1)
	sp.wait()
	spare, ok := sp.take(sp.fresh)
	is.True(ok)
	target := filepath.Join(t.TempDir(), "a.conf")
	is.NoErr(os.MkdirAll(filepath.Join(target, "sub"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(target, "sub", "keep"), []byte("k"), 0o644))

	exchanged, err := sp.swap(spare, target)
	is.True(err != nil) // refused
	is.True(!exchanged) // and undone
	b, err := os.ReadFile(filepath.Join(target, "sub", "keep"))
	is.NoErr(err)
	is.Equal(string(b), "k") // the directory is back, whole
	var st syscall.Stat_t
	is.NoErr(syscall.Lstat(spare, &st))
	is.Equal(st.Mode&syscall.S_IFMT, uint32(syscall.S_IFREG)) // the spare is back at its name
}
