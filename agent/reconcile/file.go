package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/internal/hint"
)

// File reconciles file resources: inline content, mode, owner and group,
// under a root directory. Writes are atomic (temp file in the same
// directory, fsync, rename, fsync of the directory) and parent directories
// are created. A path that leaves the root, after cleaning or through a
// symlink among its existing ancestors, is refused with a *RefusedError
// (reason PathEscapesRoot) and nothing is written; a symlink at the final
// component is never followed: Apply replaces it with the file.
//
// Safe for concurrent use on different resources.
type File struct {
	root   string
	spares *spares // nil: every write takes a temp file
}

// NewFile returns the file reconciler for resources rooted under root
// ("/" on a device, a temp dir in tests). The root must exist.
func NewFile(root string) *File { return &File{root: root} }

// KeepSpares makes r write new versions into spares kept ready in dir (see
// spares.go); without it, every write creates a temp file. Call it before
// the first apply; Close stops the spares' background work.
func (r *File) KeepSpares(dir string) error {
	sp, err := openSpares(dir)
	if err != nil {
		return fmt.Errorf("file spares in %s: %w", dir, err)
	}
	r.spares = sp
	return nil
}

var _ SpareKeeper = (*File)(nil)

// KeepSparesIn keeps spares in <stateDir>/spares (SpareKeeper).
func (r *File) KeepSparesIn(stateDir string) error {
	return r.KeepSpares(filepath.Join(stateDir, "spares"))
}

// Close stops the background work of KeepSpares and waits for it.
func (r *File) Close() error {
	r.spares.close()
	return nil
}

// SparesUsed reports how many writes used a spare and how many found none
// ready (tests and benchmarks).
func (r *File) SparesUsed() (used, missed int) {
	if r.spares == nil {
		return 0, 0
	}
	r.spares.mu.Lock()
	defer r.spares.mu.Unlock()
	return r.spares.used, r.spares.missed
}

// WaitSpares blocks until the spares' background work is done (tests and
// benchmarks: a measurement then starts from a quiet disk).
func (r *File) WaitSpares() {
	if r.spares != nil {
		r.spares.wait()
	}
}

// Kind returns events.KindFile.
func (*File) Kind() string { return events.KindFile }

func fileSpec(t Target) (*events.FileSpec, error) {
	if t.Resource.File == nil {
		return nil, fmt.Errorf("resource %s: not a file resource (kind %q)", t.Resource.ID, t.Resource.Kind)
	}
	return t.Resource.File, nil
}

// Digest formats a content hash as the differences show it.
func Digest(content []byte) string {
	sum := sha256.Sum256(content)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fileState is what is at a path now.
type fileState struct {
	kind     string // "absent", "symlink", "directory", "other", "file"
	digest   string
	mode     uint32 // permission and setuid/setgid/sticky bits
	uid, gid int
}

// observeFile looks at dir/name without following a final symlink.
func observeFile(full string) (fileState, error) {
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return fileState{kind: "absent"}, nil
	}
	if err != nil {
		return fileState{}, fmt.Errorf("stat %s: %w", full, err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fileState{kind: "symlink"}, nil
	case fi.IsDir():
		return fileState{kind: "directory"}, nil
	case !fi.Mode().IsRegular():
		return fileState{kind: "other"}, nil
	}
	f, err := openNoATime(full)
	if err != nil {
		return fileState{}, fmt.Errorf("open %s: %w", full, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fileState{}, fmt.Errorf("read %s: %w", full, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fileState{}, fmt.Errorf("stat %s: %w", full, err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	return fileState{
		kind:   "file",
		digest: "sha256:" + hex.EncodeToString(h.Sum(nil)),
		mode:   sys.Mode & 0o7777,
		uid:    int(sys.Uid),
		gid:    int(sys.Gid),
	}, nil
}

// openNoATime opens full for reading without following a final symlink and,
// where allowed (the agent owns the file or is root), without updating its
// access time: observing must not write to the disk.
func openNoATime(full string) (*os.File, error) {
	const flags = os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	f, err := os.OpenFile(full, flags|syscall.O_NOATIME, 0)
	if errors.Is(err, fs.ErrPermission) {
		f, err = os.OpenFile(full, flags, 0)
	}
	return f, err
}

func (s fileState) contentString() string {
	if s.kind == "file" {
		return s.digest
	}
	return s.kind
}

func formatMode(m uint32) string { return fmt.Sprintf("%04o", m) }

// fileMode converts unix mode bits to an os.FileMode.
func fileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		fm |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

// lookupUID resolves a user name or numeric uid.
func lookupUID(owner string) (int, error) {
	if n, err := strconv.Atoi(owner); err == nil {
		return n, nil
	}
	u, err := user.Lookup(owner)
	if err != nil {
		return 0, fmt.Errorf("owner %q: %w", owner, err)
	}
	return strconv.Atoi(u.Uid)
}

// lookupGID resolves a group name or numeric gid.
func lookupGID(group string) (int, error) {
	if n, err := strconv.Atoi(group); err == nil {
		return n, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", group, err)
	}
	return strconv.Atoi(g.Gid)
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

func groupName(gid int) string {
	if g, err := user.LookupGroupId(strconv.Itoa(gid)); err == nil {
		return g.Name
	}
	return strconv.Itoa(gid)
}

// wantFile is a file spec resolved against the device.
type wantFile struct {
	content  []byte
	digest   string
	mode     uint32
	uid, gid int // -1: not managed
}

func resolveFileSpec(s *events.FileSpec) (wantFile, error) {
	w := wantFile{content: []byte(s.Content), mode: s.ModeOrDefault() & 0o7777, uid: -1, gid: -1}
	w.digest = Digest(w.content)
	var err error
	if s.Owner != "" {
		if w.uid, err = lookupUID(s.Owner); err != nil {
			return w, err
		}
	}
	if s.Group != "" {
		if w.gid, err = lookupGID(s.Group); err != nil {
			return w, err
		}
	}
	return w, nil
}

// differences lists how have differs from want; display names come from spec.
func (w wantFile) differences(s *events.FileSpec, have fileState) []events.Difference {
	if have.kind != "file" || have.digest != w.digest {
		return []events.Difference{{Field: "content", Expected: w.digest, Observed: have.contentString()}}
	}
	var d []events.Difference
	if have.mode != w.mode {
		d = append(d, events.Difference{Field: "mode", Expected: formatMode(w.mode), Observed: formatMode(have.mode)})
	}
	if w.uid >= 0 && have.uid != w.uid {
		obs := userName(have.uid)
		if _, err := strconv.Atoi(s.Owner); err == nil {
			obs = strconv.Itoa(have.uid)
		}
		d = append(d, events.Difference{Field: "owner", Expected: s.Owner, Observed: obs})
	}
	if w.gid >= 0 && have.gid != w.gid {
		obs := groupName(have.gid)
		if _, err := strconv.Atoi(s.Group); err == nil {
			obs = strconv.Itoa(have.gid)
		}
		d = append(d, events.Difference{Field: "group", Expected: s.Group, Observed: obs})
	}
	return d
}

// Observe reports Differences with Field "content" (Expected and Observed
// "sha256:<hex>", or Observed "absent", "symlink", "directory"), "mode"
// ("0644"), and "owner"/"group" when the spec sets them. When the content
// differs, only content is reported. It changes nothing. A path outside the
// root is a *RefusedError.
func (r *File) Observe(ctx context.Context, t Target) ([]events.Difference, error) {
	s, err := fileSpec(t)
	if err != nil {
		return nil, err
	}
	p, err := resolveUnder(r.root, s.Path)
	if err != nil {
		return nil, err
	}
	w, err := resolveFileSpec(s)
	if err != nil {
		return nil, err
	}
	have, err := observeFile(p.full())
	if err != nil {
		return nil, err
	}
	return w.differences(s, have), nil
}

// Apply writes the file if its content differs (atomically, with its mode
// and owner), or fixes mode and owner in place. Changed is false when the
// file already matched. An owner that differs when the agent is not root is
// a clear error. A directory at the path is an error; nothing is removed.
//
// A permission error says which user the agent runs as, who owns the path
// and what to run.
func (r *File) Apply(ctx context.Context, t Target) (Result, error) {
	res, err := r.apply(ctx, t)
	if err != nil && t.Resource.File != nil {
		err = hint.Permission(err, filepath.Join(r.root, t.Resource.File.Path), "file", fileFix)
	}
	return res, err
}

// fileFix is what to do about a file the agent may not write.
const fileFix = "the agent writes a manifest's files as the user it runs as: run it as root (deploy/systemd/fleet-agent.service does), or give that user the path; with --root every path is under that folder"

func (r *File) apply(ctx context.Context, t Target) (Result, error) {
	pl, err := r.plan(ctx, t, nil)
	if err != nil || len(pl.diffs) == 0 {
		return Result{}, err
	}
	if pl.diffs[0].Field == "content" {
		if err := mkdirUnder(r.root, pl.p); err != nil {
			return Result{}, err
		}
		err := pl.version(r.spares).put()
		if r.spares.suits(pl.p.dir) {
			r.spares.ensure(1)
		}
		if err != nil {
			return Result{}, fmt.Errorf("file %s: %w", pl.spec.Path, err)
		}
		return Result{Changed: true}, nil
	}
	if err := pl.fixInPlace(); err != nil {
		return Result{}, err
	}
	return Result{Changed: true}, nil
}

// filePlan is what an apply of one file resource has to do, decided from
// one observation of the device.
type filePlan struct {
	spec     *events.FileSpec
	p        rootedPath
	w        wantFile
	diffs    []events.Difference // none: converged
	uid, gid int                 // owner of a rewritten file (-1: as created)
	replace  bool                // a regular file is in place
}

// plan resolves t's path under the root (through res, which may be nil),
// observes the file and decides what an apply must change; it refuses what
// an apply must not do (replace a directory, chown without root). It
// changes nothing.
func (r *File) plan(ctx context.Context, t Target, res *resolver) (filePlan, error) {
	s, err := fileSpec(t)
	if err != nil {
		return filePlan{}, err
	}
	var p rootedPath
	if res != nil {
		p, err = res.resolve(s.Path)
	} else {
		p, err = resolveUnder(r.root, s.Path)
	}
	if err != nil {
		return filePlan{}, err
	}
	w, err := resolveFileSpec(s)
	if err != nil {
		return filePlan{}, err
	}
	full := p.full()
	have, err := observeFile(full)
	if err != nil {
		return filePlan{}, err
	}
	pl := filePlan{spec: s, p: p, w: w, diffs: w.differences(s, have), uid: -1, gid: -1, replace: have.kind == "file"}
	if len(pl.diffs) == 0 {
		return pl, nil
	}
	if err := ctx.Err(); err != nil {
		return filePlan{}, err
	}
	if have.kind == "directory" || have.kind == "other" {
		return filePlan{}, fmt.Errorf("file %s: %s is a %s, not a regular file: refusing to replace it", s.Path, full, have.kind)
	}
	euid := os.Geteuid()
	for _, d := range pl.diffs {
		if (d.Field == "owner" || d.Field == "group") && euid != 0 {
			return filePlan{}, fmt.Errorf("file %s: %s is %s, want %s: changing it needs root (agent runs as uid %d)", s.Path, d.Field, d.Observed, d.Expected, euid)
		}
	}
	if pl.diffs[0].Field == "content" {
		pl.uid, pl.gid = w.uid, w.gid
		if euid != 0 {
			// Not root: a new file is ours; chown only to what it already is.
			if pl.uid >= 0 && pl.uid != euid {
				return filePlan{}, fmt.Errorf("file %s: owner %s: changing it needs root (agent runs as uid %d)", s.Path, s.Owner, euid)
			}
			pl.uid = -1
		} else if have.kind == "file" {
			// Keep the owner of a file we rewrite when the spec does not set one.
			if pl.uid < 0 {
				pl.uid = have.uid
			}
			if pl.gid < 0 {
				pl.gid = have.gid
			}
		}
	}
	return pl, nil
}

// version is the new version of the file the plan writes.
func (pl filePlan) version(sp *spares) *version {
	return &version{sp: sp, dir: pl.p.dir, name: pl.p.name, content: pl.w.content, mode: fileMode(pl.w.mode),
		uid: pl.uid, gid: pl.gid, replace: pl.replace}
}

// fixInPlace fixes owner and mode of a file whose content matches, on the
// open file (never a symlink), and fsyncs it.
func (pl filePlan) fixInPlace() error {
	s, w := pl.spec, pl.w
	f, err := os.OpenFile(pl.p.full(), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("file %s: open: %w", s.Path, err)
	}
	defer f.Close()
	if w.uid >= 0 || w.gid >= 0 {
		if err := f.Chown(w.uid, w.gid); err != nil {
			return fmt.Errorf("file %s: chown: %w", s.Path, err)
		}
	}
	if err := f.Chmod(fileMode(w.mode)); err != nil {
		return fmt.Errorf("file %s: chmod: %w", s.Path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("file %s: fsync: %w", s.Path, err)
	}
	return nil
}

// Delete removes the file (a symlink at the path is removed, not followed).
// Deleting an absent file succeeds, and so does deleting one whose parent
// is not a directory (ENOTDIR: /etc a file, so /etc/motd cannot exist: it
// is already absent, and nothing is touched); a directory at the path is
// an error; a path outside the root is refused and nothing is removed.
func (r *File) Delete(ctx context.Context, t Target) error {
	s, err := fileSpec(t)
	if err != nil {
		return err
	}
	p, err := resolveUnder(r.root, s.Path)
	if errors.Is(err, syscall.ENOTDIR) {
		return nil // an ancestor inside the root is a file: nothing can be at the path
	}
	if err != nil {
		return err
	}
	full := p.full()
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("file %s: %w", s.Path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("file %s: %s is a directory: refusing to remove it", s.Path, full)
	}
	if err := os.Remove(full); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("file %s: %w", s.Path, err)
	}
	return syncDir(p.dir)
}
