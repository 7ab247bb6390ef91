package reconcile

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// writeAtomic replaces dir/name with content: a temp file in the same
// directory is written, given its owner and mode, fsynced, renamed over the
// old name (a symlink there is replaced, never followed) and the directory is
// fsynced. uid/gid < 0 leave the owner as created.
func writeAtomic(dir, name string, content []byte, mode os.FileMode, uid, gid int) error {
	tmp, _, err := writeTemp(dir, name, content, mode, uid, gid)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename into place: %w", err)
	}
	return syncDir(dir)
}

// writeTemp writes content to a new temp file in dir (named after name),
// gives it its owner and mode and fsyncs it; it returns its path and its
// identity (device and inode). On error nothing is left behind. Owner and mode are set only where creation did not
// already give them: each such change is one more journal write.
func writeTemp(dir, name string, content []byte, mode os.FileMode, uid, gid int) (tmp string, id fileID, err error) {
	f, err := createTemp(dir, ".fleet-"+name+".", mode.Perm())
	if err != nil {
		return "", id, fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	tmp = f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(content); err != nil {
		return "", id, fmt.Errorf("write %s: %w", tmp, err)
	}
	var st syscall.Stat_t
	if err = syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", id, fmt.Errorf("stat %s: %w", tmp, err)
	}
	id = idOf(&st) // chown and chmod below change neither inode, size nor mtime
	if (uid >= 0 && uint32(uid) != st.Uid) || (gid >= 0 && uint32(gid) != st.Gid) {
		if err = f.Chown(uid, gid); err != nil {
			return "", id, fmt.Errorf("chown %s: %w", tmp, err)
		}
		if uid >= 0 {
			id.uid = uint32(uid)
		}
		if gid >= 0 {
			id.gid = uint32(gid)
		}
		st.Mode = 0 // chown cleared setuid/setgid bits: set the mode again
	}
	if st.Mode&0o7777 != unixMode(mode) {
		if err = f.Chmod(mode); err != nil {
			return "", id, fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	id.mode = syscall.S_IFREG | unixMode(mode)
	if err = f.Sync(); err != nil {
		return "", id, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return "", id, fmt.Errorf("close %s: %w", tmp, err)
	}
	return tmp, id, nil
}

// fileID identifies one version of a file: its inode, size, last
// modification, type and mode bits, and owner.
type fileID struct {
	dev, ino   uint64
	size       int64
	mtimeNanos int64
	mode       uint32
	uid, gid   uint32
}

func idOf(st *syscall.Stat_t) fileID {
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size, mtimeNanos: st.Mtim.Nano(),
		mode: st.Mode, uid: st.Uid, gid: st.Gid}
}

// stillAt reports whether the file at full (not followed if a symlink) is
// id, unchanged: the version this agent wrote and fsynced, with the same
// size, modification time, mode and owner.
func stillAt(full string, id fileID) bool {
	var st syscall.Stat_t
	if err := syscall.Lstat(full, &st); err != nil {
		return false
	}
	return idOf(&st) == id
}

// createTemp creates a new file dir/prefix<random> with perm (less the
// umask), never following a symlink (O_EXCL).
func createTemp(dir, prefix string, perm os.FileMode) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_CLOEXEC, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, fmt.Errorf("no unused temp name in %s", dir)
}

// unixMode converts an os.FileMode to unix permission and special bits.
func unixMode(m os.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// syncDir fsyncs a directory so that a rename or removal in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}
