package reconcile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spares: creating a file (allocating its inode) and later freeing the one
// it replaced are most of what a durable file replace costs on ext4, more
// than the fsync: on the project's test disk 1,000 replaces take about
// 0.6 s through temp files and 0.2 s through spares (BENCHMARKS.md). The
// file reconciler therefore writes a new version into a spare, an empty file
// created ahead of need in the agent's state directory, and swaps it with the
// file in place in one step (renameat2 RENAME_EXCHANGE): the path shows the
// old version or the new one, never a mix, as with a rename. The old version
// ends up under the spare's name; it is moved aside ("retired") and deleted
// later, never written again, so a process that still has it open keeps
// reading it intact, as after a rename. Creating spares and deleting retired
// files happen on a background goroutine once writes pause.
//
// Spares are used only in the state directory's mount, in directories that
// are neither setgid nor carry a default ACL, and not at all under SELinux
// (a new file takes its group, ACL and label from the directory it is
// created in). Where no regular file is in place, a spare is renamed into
// place. Anything else (no spare ready, another mount, a kernel without
// RENAME_EXCHANGE) takes the temp file and rename of writeTemp.
//
// A crash can leave spares, or a retired old version not yet moved aside,
// in the spare directory: openSpares retires all of it and starts afresh;
// retired files are deleted, directories never (see deleteRetired).

// maxSpares bounds the spares kept ready.
const maxSpares = 4096

type spares struct {
	fresh, old string // spares ready; retired old versions to delete
	mount      mount  // where the spares are: a rename works only within it

	mu      sync.Mutex
	free    []string // paths of spares ready, empty, never swapped in
	next    uint64   // name counter
	want    int      // spares to keep ready
	running bool     // the refill goroutine runs
	pending bool     // a refill is scheduled (timer)
	timer   *time.Timer
	// pendingSince is when the scheduled refill was first asked for.
	pendingSince time.Time
	again        bool // work arrived while it ran
	closed       bool
	wg           sync.WaitGroup

	suitable sync.Map // directory → whether spares suit it (suits)

	// Counters, for tests and benchmarks.
	used, missed int
}

// openSpares opens (creating) the spare directory dir.
func openSpares(dir string) (*spares, error) {
	if selinuxOn() {
		// SELinux labels a new file by the directory it is created in; a
		// spare made in the state directory would carry the wrong label.
		return nil, errors.New("SELinux is on: writing through temp files beside each file")
	}
	fresh, old := filepath.Join(dir, "fresh"), filepath.Join(dir, "old")
	if err := os.MkdirAll(old, 0o700); err != nil {
		return nil, err
	}
	// What a previous run left ready may since have been swapped in (a
	// crash between a swap and the retirement of what it swapped out):
	// retire all of it.
	if _, err := os.Lstat(fresh); err == nil {
		if err := os.Rename(fresh, filepath.Join(old, "fresh-"+strconv.FormatInt(time.Now().UnixNano(), 36))); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(fresh, 0o700); err != nil {
		return nil, err
	}
	// A default ACL on the state directory would pass to every spare, and
	// from there to the files they become.
	if err := unix.Removexattr(fresh, "system.posix_acl_default"); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.ENOTSUP) {
		return nil, fmt.Errorf("remove the default ACL of %s: %w", fresh, err)
	}
	m := mountOf(fresh)
	if m == (mount{}) {
		return nil, errors.New("cannot tell the mount of the spare directory")
	}
	s := &spares{fresh: fresh, old: old, mount: m}
	s.kick() // delete what is retired
	return s, nil
}

// selinuxOn reports whether SELinux may label files here: its file system
// is mounted, or this process runs in an SELinux context (user:role:type,
// as in a container on an SELinux host without selinuxfs inside; an
// AppArmor profile name has no colon).
func selinuxOn() bool {
	if _, err := os.Stat("/sys/fs/selinux/enforce"); err == nil {
		return true
	}
	b, err := os.ReadFile("/proc/self/attr/current")
	return err == nil && strings.Count(string(b), ":") >= 2
}

// take returns a spare for a new version of a file in dir, if one is ready
// and suits dir.
func (s *spares) take(dir string) (string, bool) {
	if s == nil {
		return "", false
	}
	if !s.suits(dir) {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.free) == 0 {
		s.missed++
		return "", false
	}
	p := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	s.used++
	return p, true
}

// mount identifies a mount (a bind mount of the same file system is
// another one: rename does not cross it). Zero: unknown.
type mount struct{ dev, id uint64 }

// mountOf returns the mount dir is in (statx's mount id where the kernel
// has it, else the device).
func mountOf(dir string) mount {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, 0, unix.STATX_MNT_ID, &stx); err != nil {
		return mount{}
	}
	m := mount{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor) + 1} // +1: never zero
	if stx.Mask&unix.STATX_MNT_ID != 0 {
		m.id = stx.Mnt_id
	}
	return m
}

// suits reports whether a spare may become a file in dir: dir is in the
// spares' mount, is not setgid and gives its files no default ACL (a file created in
// dir would get it; a spare made elsewhere would not). Remembered per dir.
func (s *spares) suits(dir string) bool {
	if s == nil {
		return false
	}
	if ok, seen := s.suitable.Load(dir); seen {
		return ok.(bool)
	}
	ok := s.mount == mountOf(dir)
	if ok {
		// A file created in a setgid directory takes the directory's group.
		var st syscall.Stat_t
		ok = syscall.Stat(dir, &st) == nil && st.Mode&syscall.S_ISGID == 0
	}
	if ok {
		_, err := unix.Getxattr(dir, "system.posix_acl_default", nil)
		ok = errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP)
	}
	s.suitable.Store(dir, ok)
	return ok
}

// retire moves what is at path (a spare no longer wanted, or the old version
// a swap left under the spare's name) aside, to be deleted by the next
// refill.
func (s *spares) retire(path string) {
	if err := os.Rename(path, filepath.Join(s.old, filepath.Base(path))); err != nil {
		os.Remove(path)
	}
}

// refillDelay is how long writes must pause before the refill starts, so
// that it does not compete with a batch of writes or what follows it.
const refillDelay = 250 * time.Millisecond

// maxRefillDelay bounds how long steady writes can postpone the refill.
const maxRefillDelay = 2 * time.Second

// ensure asks for n spares to be kept ready (at most maxSpares); the
// refill starts once writes paused for refillDelay.
func (s *spares) ensure(n int) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = min(max(s.want, n), maxSpares)
	if s.closed {
		return
	}
	switch {
	case s.timer == nil:
		s.timer = time.AfterFunc(refillDelay, s.kick)
		s.pendingSince = time.Now()
	case !s.pending:
		s.timer.Reset(refillDelay)
		s.pendingSince = time.Now()
	case time.Since(s.pendingSince) < maxRefillDelay:
		s.timer.Reset(refillDelay) // steady writes postpone it, up to maxRefillDelay
	}
	s.pending = true
}

func (s *spares) kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = false
	if s.closed {
		return
	}
	if s.running {
		s.again = true
		return
	}
	s.running = true
	s.wg.Add(1)
	go s.refill()
}

// refill deletes what is retired and creates spares until want are ready.
func (s *spares) refill() {
	defer s.wg.Done()
	for {
		s.deleteRetired()
		for !s.isClosed() {
			s.mu.Lock()
			if len(s.free) >= s.want {
				s.mu.Unlock()
				break
			}
			s.next++
			p := filepath.Join(s.fresh, "s"+strconv.FormatUint(s.next, 36))
			s.mu.Unlock()
			if err := createSpare(p); err != nil {
				break // a full disk: writes fall back to temp files
			}
			s.mu.Lock()
			s.free = append(s.free, p)
			s.mu.Unlock()
		}
		s.mu.Lock()
		if !s.again || s.closed {
			s.running = false
			s.mu.Unlock()
			return
		}
		s.again = false
		s.mu.Unlock()
	}
}

// deleteRetired deletes what is retired: the files in old/, and in the
// directories a start retired whole (old/fresh-*), which it then removes
// once empty. It never deletes a directory's contents recursively: a
// directory found where a file was expected (swapped in by a race and not
// put back before a crash) is left as it is, for a person to look at.
func (s *spares) deleteRetired() {
	ents, err := os.ReadDir(s.old)
	if err != nil {
		return
	}
	for _, e := range ents {
		if s.isClosed() {
			return
		}
		p := filepath.Join(s.old, e.Name())
		if !e.IsDir() {
			os.Remove(p)
			continue
		}
		if !strings.HasPrefix(e.Name(), "fresh-") {
			continue
		}
		inner, err := os.ReadDir(p)
		if err != nil {
			continue
		}
		for _, f := range inner {
			if !f.IsDir() {
				os.Remove(filepath.Join(p, f.Name()))
			}
		}
		os.Remove(p) // only if now empty
	}
}

// createSpare creates an empty file, mode 0644 whatever the umask (the
// most common mode: no chmod when a spare becomes such a file).
func createSpare(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return err
	}
	err = f.Chmod(0o644)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
	}
	return err
}

func (s *spares) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// wait blocks until no refill is scheduled or running (tests, benchmarks).
func (s *spares) wait() {
	for {
		s.mu.Lock()
		busy := s.running || s.pending
		s.mu.Unlock()
		if !busy {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// close stops the refill and waits for it.
func (s *spares) close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.closed = true
	s.pending = false
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// openSpare opens spare p for writing, checking that it still is what take
// promised: an empty regular file with one link. Otherwise it is retired
// and ok is false.
func (s *spares) open(p string) (*os.File, bool) {
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err == nil {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &st); err == nil && st.Mode&syscall.S_IFMT == syscall.S_IFREG && st.Size == 0 && st.Nlink == 1 {
			return f, true
		}
		f.Close()
	}
	s.retire(p)
	s.mu.Lock()
	s.used--
	s.missed++
	s.mu.Unlock()
	return nil, false
}

// swap puts the new version at spare p in place of the regular file at
// target, in one step, and retires the old version. exchanged is false
// (and nothing changed) where the kernel or file system has no
// RENAME_EXCHANGE or nothing is at target: the caller renames instead. If
// what was at target turns out not to be a regular file (replaced since it
// was observed), the swap is undone and err says so.
func (s *spares) swap(p, target string) (exchanged bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
	switch {
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EXDEV):
		return false, nil
	case err != nil:
		return false, err
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		// Not a file we may delete: put it back.
		if uerr := unix.Renameat2(unix.AT_FDCWD, p, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE); uerr != nil {
			return true, errors.Join(errors.New("swapped out something that is not a regular file and could not put it back"), uerr)
		}
		return false, errors.New("what is in place is no longer a regular file: refusing to replace it")
	}
	s.retire(p)
	return true, nil
}
