package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
)

func fileTarget(id, path, content string) reconcile.Target {
	return reconcile.Target{Generation: 1, Resource: events.Resource{ID: id, Kind: events.KindFile,
		File: &events.FileSpec{Path: path, Content: content}}}
}

func TestFileContract(t *testing.T) {
	reconciletest.Run(t, reconciletest.Case{New: func(t *testing.T) reconciletest.Subject {
		root := t.TempDir()
		tg := fileTarget("motd", "/etc/motd", "hello\n")
		changed := fileTarget("motd", "/etc/motd", "hello again\n")
		changed.Generation = 2
		return reconciletest.Subject{
			Reconciler: reconcile.NewFile(root),
			Target:     tg,
			Changed:    &changed,
			Tamper: func(t *testing.T) {
				if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("tampered\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

// TestFileWithSparesContract: the same contract when new versions are
// written into spares and swapped into place. Each subject starts with
// spares ready (made by writing files elsewhere), and the test checks that
// the contract's writes did take them.
func TestFileWithSparesContract(t *testing.T) {
	var files []*reconcile.File
	base := map[*reconcile.File]int{} // spares used before the contract's writes
	reconciletest.Run(t, reconciletest.Case{New: func(t *testing.T) reconciletest.Subject {
		root := t.TempDir()
		f := reconcile.NewFile(root)
		if err := f.KeepSpares(filepath.Join(t.TempDir(), "spares")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		var warm []reconcile.Target
		for i := range 8 {
			warm = append(warm, fileTarget(fmt.Sprintf("w%d", i), fmt.Sprintf("/warm/w%d", i), "w\n"))
		}
		for _, r := range f.ApplyBatch(context.Background(), warm) {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
		f.WaitSpares() // 8 spares ready
		files = append(files, f)
		base[f], _ = f.SparesUsed()
		tg := fileTarget("motd", "/etc/motd", "hello\n")
		changed := fileTarget("motd", "/etc/motd", "hello again\n")
		changed.Generation = 2
		return reconciletest.Subject{
			Reconciler: f,
			Target:     tg,
			Changed:    &changed,
			Tamper: func(t *testing.T) {
				if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("tampered\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
	used := 0
	for _, f := range files {
		u, _ := f.SparesUsed()
		used += u - base[f]
	}
	if used == 0 {
		t.Fatal("no write of the contract went through a spare")
	}
	t.Logf("%d writes of the contract went through spares", used)
}

func TestFileApplyWritesContentModeAndParents(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	tg := fileTarget("conf", "/etc/app/conf.d/a.conf", "x=1\n")
	tg.Resource.File.Mode = "0600"
	res, err := r.Apply(context.Background(), tg)
	is.NoErr(err)
	is.True(res.Changed)
	full := filepath.Join(root, "etc/app/conf.d/a.conf")
	b, err := os.ReadFile(full)
	is.NoErr(err)
	is.Equal(string(b), "x=1\n")
	fi, err := os.Stat(full)
	is.NoErr(err)
	is.Equal(fi.Mode().Perm(), os.FileMode(0o600))
	entries, err := os.ReadDir(filepath.Dir(full))
	is.NoErr(err)
	is.Equal(len(entries), 1) // no temp file left beside it
}

func TestFileObserveReportsContentModeOwner(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	tg := fileTarget("f", "/f", "abc")
	d, err := r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "content", Expected: reconcile.Digest([]byte("abc")), Observed: "absent"}})

	is.NoErr(os.WriteFile(filepath.Join(root, "f"), []byte("abd"), 0o644))
	d, err = r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "content", Expected: reconcile.Digest([]byte("abc")), Observed: reconcile.Digest([]byte("abd"))}})

	is.NoErr(os.WriteFile(filepath.Join(root, "f"), []byte("abc"), 0o644))
	is.NoErr(os.Chmod(filepath.Join(root, "f"), 0o640))
	d, err = r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "mode", Expected: "0644", Observed: "0640"}})

	tg.Resource.File.Mode = "0640"
	tg.Resource.File.Owner = "65534"
	d, err = r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "owner", Expected: "65534", Observed: strconv.Itoa(os.Geteuid())}})
}

func TestFileOwnerAndModeFixedInPlace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	tg := fileTarget("f", "/f", "abc")
	tg.Resource.File.Owner = "nobody"
	tg.Resource.File.Mode = "4750"
	res, err := r.Apply(context.Background(), tg)
	is.NoErr(err)
	is.True(res.Changed)
	st := stat(t, filepath.Join(root, "f"))
	is.Equal(strconv.Itoa(int(st.Uid)), nobody.Uid)
	is.Equal(st.Mode&0o7777, uint32(0o4750)) // setuid survives the chown

	is.NoErr(os.Chown(filepath.Join(root, "f"), 0, 0))
	d, err := r.Observe(context.Background(), tg)
	is.NoErr(err)
	// chown also cleared the setuid bit: mode and owner both differ.
	is.Equal(d, []events.Difference{
		{Field: "mode", Expected: "4750", Observed: "0750"},
		{Field: "owner", Expected: "nobody", Observed: "root"},
	})
	ino := st.Ino
	res, err = r.Apply(context.Background(), tg)
	is.NoErr(err)
	is.True(res.Changed)
	st = stat(t, filepath.Join(root, "f"))
	is.Equal(strconv.Itoa(int(st.Uid)), nobody.Uid)
	is.Equal(st.Mode&0o7777, uint32(0o4750))
	is.Equal(st.Ino, ino) // fixed in place, not rewritten
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func TestFileUnknownOwnerIsError(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	tg := fileTarget("f", "/f", "abc")
	tg.Resource.File.Owner = "no-such-user-fleet"
	_, err := reconcile.NewFile(root).Apply(context.Background(), tg)
	is.True(err != nil)
	is.True(!errors.Is(err, reconcile.ErrRefused))
	_, statErr := os.Lstat(filepath.Join(root, "f"))
	is.True(errors.Is(statErr, os.ErrNotExist)) // nothing written
}

func TestFileDirectoryAtPathIsErrorNotRemoved(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	is.NoErr(os.MkdirAll(filepath.Join(root, "d/inner"), 0o755))
	r := reconcile.NewFile(root)
	tg := fileTarget("d", "/d", "x")
	d, err := r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d[0].Observed, "directory")
	_, err = r.Apply(context.Background(), tg)
	is.True(err != nil) // a directory is not replaced
	is.True(r.Delete(context.Background(), tg) != nil)
	_, err = os.Stat(filepath.Join(root, "d/inner"))
	is.NoErr(err) // still there
}

// TestFileDeleteUnderAFileIsAlreadyAbsent: /etc is a regular file, so
// /etc/motd cannot exist (ENOTDIR): deleting it succeeds as already
// absent, and the file /etc is left as it was.
func TestFileDeleteUnderAFileIsAlreadyAbsent(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	is.NoErr(os.WriteFile(filepath.Join(root, "etc"), []byte("not a directory"), 0o644))
	r := reconcile.NewFile(root)
	tg := fileTarget("motd", "/etc/motd", "hi\n")
	is.NoErr(r.Delete(context.Background(), tg))
	b, err := os.ReadFile(filepath.Join(root, "etc"))
	is.NoErr(err)
	is.Equal(string(b), "not a directory") // untouched
	_, err = r.Apply(context.Background(), tg)
	is.True(err != nil) // creating it is still a failure: its parent is not a directory
}

// TestFileEscapesAreRefused: every way out of the root is refused (or, for a
// final symlink, replaced rather than followed); nothing outside is written.
func TestFileEscapesAreRefused(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, root, outside string) // build symlinks under root
		path    string
		refused bool // else: applied inside the root without following
	}{
		{name: "dotdot leaves root after cleaning", path: "/../escaped",
			setup: func(t *testing.T, root, outside string) {}, refused: true},
		{name: "dotdot deep leaves root after cleaning", path: "/etc/../../escaped",
			setup: func(t *testing.T, root, outside string) {}, refused: true},
		{name: "symlinked parent dir to outside (absolute)", path: "/etc/app/target",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, outside, filepath.Join(root, "etc/app"))
			}, refused: true},
		{name: "symlinked parent dir to outside (relative)", path: "/etc/app/target",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				rel, err := filepath.Rel(filepath.Join(root, "etc"), outside)
				if err != nil {
					t.Fatal(err)
				}
				symlink(t, rel, filepath.Join(root, "etc/app"))
			}, refused: true},
		{name: "symlinked grandparent with missing dirs below", path: "/var/lib/new/deeper/target",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "var"))
				symlink(t, outside, filepath.Join(root, "var/lib"))
			}, refused: true},
		{name: "absolute symlink to / as parent", path: "/host/target",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, "/", filepath.Join(root, "host"))
			}, refused: true},
		{name: "dangling symlink parent", path: "/gone/target",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, filepath.Join(outside, "nope"), filepath.Join(root, "gone"))
			}, refused: true},
		{name: "final symlink to outside file is replaced, not followed", path: "/etc/target",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				symlink(t, filepath.Join(outside, "target"), filepath.Join(root, "etc/target"))
			}, refused: false},
		{name: "symlinked parent inside root is allowed", path: "/etc/app/target",
			setup: func(t *testing.T, root, outside string) {
				mkdir(t, filepath.Join(root, "etc"))
				mkdir(t, filepath.Join(root, "real"))
				symlink(t, "../real", filepath.Join(root, "etc/app"))
			}, refused: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			base := t.TempDir()
			root, outside := filepath.Join(base, "root"), filepath.Join(base, "outside")
			mkdir(t, root)
			mkdir(t, outside)
			is.NoErr(os.WriteFile(filepath.Join(outside, "target"), []byte("precious"), 0o644))
			c.setup(t, root, outside)
			r := reconcile.NewFile(root)
			tg := fileTarget("esc", c.path, "pwned")
			ctx := context.Background()

			_, obsErr := r.Observe(ctx, tg)
			_, applyErr := r.Apply(ctx, tg)
			batchErr := r.ApplyBatch(ctx, []reconcile.Target{tg})[0].Err
			delErr := r.Delete(ctx, tg)
			if c.refused {
				for _, err := range []error{obsErr, applyErr, batchErr, delErr} {
					var re *reconcile.RefusedError
					is.True(errors.As(err, &re)) // refused, not a plain failure
					is.Equal(re.Reason, "PathEscapesRoot")
					is.True(errors.Is(err, reconcile.ErrRefused))
				}
			} else {
				is.NoErr(obsErr)
				is.NoErr(applyErr)
				is.NoErr(batchErr)
				is.NoErr(delErr)
			}
			// Nothing outside the root was written, replaced or removed.
			b, err := os.ReadFile(filepath.Join(outside, "target"))
			is.NoErr(err)
			is.Equal(string(b), "precious")
			entries, err := os.ReadDir(outside)
			is.NoErr(err)
			is.Equal(len(entries), 1)
			entries, err = os.ReadDir(base)
			is.NoErr(err)
			is.Equal(len(entries), 2) // no "escaped" beside root
		})
	}
}

func TestFileFinalSymlinkReplacedByFile(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	outside := t.TempDir()
	is.NoErr(os.WriteFile(filepath.Join(outside, "t"), []byte("precious"), 0o644))
	symlink(t, filepath.Join(outside, "t"), filepath.Join(root, "link"))
	r := reconcile.NewFile(root)
	tg := fileTarget("l", "/link", "mine")
	d, err := r.Observe(context.Background(), tg)
	is.NoErr(err)
	is.Equal(d[0].Observed, "symlink") // the link is not followed to read the outside file
	_, err = r.Apply(context.Background(), tg)
	is.NoErr(err)
	fi, err := os.Lstat(filepath.Join(root, "link"))
	is.NoErr(err)
	is.True(fi.Mode().IsRegular())
	b, _ := os.ReadFile(filepath.Join(outside, "t"))
	is.Equal(string(b), "precious")
}

func TestFileWatchReportsChange(t *testing.T) {
	is := is.New(t)
	root := t.TempDir()
	r := reconcile.NewFile(root)
	a := fileTarget("a", "/etc/a", "a")
	b := fileTarget("b", "/srv/new/b", "b") // parent does not exist yet
	_, err := r.Apply(context.Background(), a)
	is.NoErr(err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, []reconcile.Target{a, b}, func(id string) { got <- id }) }()
	time.Sleep(100 * time.Millisecond) // let the watches be set up

	is.NoErr(os.WriteFile(filepath.Join(root, "etc/a"), []byte("tampered"), 0o644))
	is.Equal(waitID(t, got), "a")

	// The missing parent appears, then the file: b is reported.
	_, err = r.Apply(context.Background(), b)
	is.NoErr(err)
	is.Equal(waitID(t, got), "b")
	drain(got)
	is.NoErr(os.WriteFile(filepath.Join(root, "srv/new/b"), []byte("tampered"), 0o644))
	is.Equal(waitID(t, got), "b") // now watched in its own directory

	is.NoErr(os.WriteFile(filepath.Join(root, "etc/unrelated"), []byte("x"), 0o644))
	select {
	case id := <-got:
		t.Fatalf("unrelated file reported as %s", id)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	is.NoErr(<-done)
}

func waitID(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
		return ""
	}
}

func drain(ch chan string) {
	time.Sleep(200 * time.Millisecond)
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
