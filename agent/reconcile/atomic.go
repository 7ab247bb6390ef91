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

// version is a new version of dir/name on its way into place: written (to
// a spare of sp, or to a temp file in the same directory), given its owner
// and mode and fsynced by write; put in place by install (swapped with the
// regular file there when replace is set and a spare was used; else renamed
// over the old name, a symlink there being replaced, never followed).
// uid/gid < 0 leave the owner as created.
type version struct {
	sp        *spares
	dir, name string
	content   []byte
	mode      os.FileMode
	uid, gid  int
	replace   bool // a regular file is in place

	tmp   string // where write put it
	id    fileID // its identity there (see stillAt)
	spare bool   // tmp is a spare of sp
}

func (v *version) write() (err error) {
	v.tmp, v.id, v.spare, err = writeTemp(v.sp, v.dir, v.name, v.content, v.mode, v.uid, v.gid)
	return err
}

// install puts the written version in place; on error it is removed (or
// its spare retired). A spare that cannot be renamed into dir (a boundary
// suits did not see: a project quota, an encrypted directory, a bind mount
// on a kernel without mount ids) marks dir unsuitable, and the version is
// written again through a temp file.
func (v *version) install() error {
	err := installAt(v.sp, v.tmp, v.spare, v.replace, v.dir, v.name)
	if errors.Is(err, errSpareCrossed) {
		if err = v.write(); err == nil { // suits(dir) is false now: a temp file
			err = installAt(v.sp, v.tmp, v.spare, v.replace, v.dir, v.name)
		}
	}
	return err
}

// discard removes a written version that is not to be installed.
func (v *version) discard() {
	if v.spare {
		v.sp.retire(v.tmp)
	} else {
		os.Remove(v.tmp)
	}
}

// writeAtomic replaces dir/name with content through a temp file (see
// version), then fsyncs the directory.
func writeAtomic(dir, name string, content []byte, mode os.FileMode, uid, gid int) error {
	v := version{dir: dir, name: name, content: content, mode: mode, uid: uid, gid: gid}
	return v.put()
}

// put writes the version, installs it and fsyncs its directory.
func (v *version) put() error {
	if err := v.write(); err != nil {
		return err
	}
	if err := v.install(); err != nil {
		return err
	}
	return syncDir(v.dir)
}

// errSpareCrossed: a spare could not be renamed into its directory (see
// version.install).
var errSpareCrossed = errors.New("a spare cannot be renamed into this directory")

// installAt puts the version written at tmp in place at dir/name; on error
// tmp is removed or retired.
func installAt(sp *spares, tmp string, spare, replace bool, dir, name string) error {
	target := filepath.Join(dir, name)
	if spare && replace {
		exchanged, err := sp.swap(tmp, target)
		if err != nil {
			if !exchanged {
				sp.retire(tmp)
			}
			return fmt.Errorf("swap into place: %w", err)
		}
		if exchanged {
			return nil
		}
	}
	if err := os.Rename(tmp, target); err != nil {
		if spare {
			sp.retire(tmp)
			if errors.Is(err, syscall.EXDEV) {
				sp.suitable.Store(dir, false)
				return errSpareCrossed
			}
		} else {
			os.Remove(tmp)
		}
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}

// writeTemp writes content to a spare of sp if one is ready for dir, else to
// a new temp file in dir (named after name); it gives the file its owner and
// mode and fsyncs it, and returns its path, its identity (device and inode)
// and whether it is a spare. On error nothing is left behind. Owner and mode
// are set only where creation did not already give them: each such change is
// one more journal write.
func writeTemp(sp *spares, dir, name string, content []byte, mode os.FileMode, uid, gid int) (tmp string, id fileID, spare bool, err error) {
	var f *os.File
	if p, ok := sp.take(dir); ok {
		if f, ok = sp.open(p); ok {
			tmp, spare = p, true
		}
	}
	if f == nil {
		if f, err = createTemp(dir, ".fleet-"+name+".", mode.Perm()); err != nil {
			return "", id, false, fmt.Errorf("create temp file in %s: %w", dir, err)
		}
		tmp = f.Name()
	}
	defer func() {
		if err != nil {
			f.Close()
			if spare {
				sp.retire(tmp)
			} else {
				os.Remove(tmp)
			}
		}
	}()
	if _, err = f.Write(content); err != nil {
		return "", id, false, fmt.Errorf("write %s: %w", tmp, err)
	}
	var st syscall.Stat_t
	if err = syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "", id, false, fmt.Errorf("stat %s: %w", tmp, err)
	}
	id = idOf(&st) // chown and chmod below change neither inode, size nor mtime
	if (uid >= 0 && uint32(uid) != st.Uid) || (gid >= 0 && uint32(gid) != st.Gid) {
		if err = f.Chown(uid, gid); err != nil {
			return "", id, false, fmt.Errorf("chown %s: %w", tmp, err)
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
			return "", id, false, fmt.Errorf("chmod %s: %w", tmp, err)
		}
	}
	id.mode = syscall.S_IFREG | unixMode(mode)
	if err = f.Sync(); err != nil {
		return "", id, false, fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return "", id, false, fmt.Errorf("close %s: %w", tmp, err)
	}
	return tmp, id, spare, nil
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
