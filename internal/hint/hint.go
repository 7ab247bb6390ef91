// Package hint turns the operating system's terse errors into ones that say
// what to do: a lock or port in use names the process holding it (from
// /proc/locks, /proc/net/tcp and /proc/*/fd, where they can be read), and a
// permission error names the user fleet runs as, the path's owner and the
// command that fixes it.
package hint

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Locked reports whether err is a lock already held (by this process or another).
func Locked(err error) bool {
	return err != nil && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(err.Error(), "lock held by current process"))
}

// InUse rewrites a lock error on a store under dir (the flag that names it,
// such as --state or --data) as "in use by PID N (command line)" and what to
// do; other errors come back as they are.
func InUse(err error, dir, flag string) error {
	if !Locked(err) {
		return err
	}
	who := "another process"
	if pid, ok := LockHolder(dir); ok {
		who = Process(pid)
	}
	return fmt.Errorf("%s %s is in use by %s: one process at a time keeps its store there; stop that one (for a service: systemctl stop it) or give this one another %s: %w", flag, dir, who, flag, err)
}

// LockHolder returns the PID holding a POSIX or flock lock on a file under
// dir (a Pebble store's LOCK, say), as /proc/locks says; false if none is
// found or it cannot be read (an OFD lock has no PID).
func LockHolder(dir string) (int, bool) {
	inodes := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && strings.Count(strings.TrimPrefix(p, dir), string(filepath.Separator)) > 3 {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "LOCK" {
			if fi, err := os.Stat(p); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					inodes[st.Ino] = true
				}
			}
		}
		return nil
	})
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			inodes[st.Ino] = true
		}
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: POSIX  ADVISORY  WRITE 4242 08:01:1234567 0 EOF
		fs := strings.Fields(sc.Text())
		if len(fs) < 6 || fs[1] == "->" {
			continue
		}
		dev := strings.Split(fs[5], ":")
		ino, err := strconv.ParseUint(dev[len(dev)-1], 10, 64)
		pid, perr := strconv.Atoi(fs[4])
		if err == nil && perr == nil && pid > 0 && inodes[ino] {
			return pid, true
		}
	}
	return 0, false
}

// PortHolder returns the PID of the process listening on addr's TCP port,
// from /proc/net/tcp{,6} and the socket links under /proc/*/fd (readable for
// one's own processes, or all as root); false if not found.
func PortHolder(addr string) (int, bool) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port == 0 {
		return 0, false
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st tx:rx tr:tm retr uid timeout inode
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if p, err := strconv.ParseUint(fs[1][i+1:], 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, false
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && inodes[l] {
				return pid, true
			}
		}
	}
	return 0, false
}

// Process is "PID N (its command line)", or "PID N (this process)".
func Process(pid int) string {
	if pid == os.Getpid() {
		return fmt.Sprintf("PID %d (this process)", pid)
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
	if err != nil || cmd == "" {
		return fmt.Sprintf("PID %d", pid)
	}
	if len(cmd) > 120 {
		cmd = cmd[:117] + "..."
	}
	return fmt.Sprintf("PID %d (%s)", pid, cmd)
}

// Permission adds to a permission error on path what to do: which user
// this process runs as, who owns path (or the nearest parent that exists)
// and its mode, and the command that fixes it (a chown of path when it
// exists; when it does not, a directory made for this user, never a chown of
// a parent such as /var/lib or /etc); fix is said last (for systemd, say).
// Other errors come back as they are.
func Permission(err error, path, flag, fix string) error {
	return permission(err, path, flag, fix, false)
}

// PermissionDir is Permission for a directory this process keeps (--data,
// --state): one that does not exist yet is made for this user.
func PermissionDir(err error, path, flag, fix string) error {
	return permission(err, path, flag, fix, true)
}

func permission(err error, path, flag, fix string, dir bool) error {
	if err == nil || !errors.Is(err, fs.ErrPermission) {
		return err
	}
	me := Whoami()
	at, owner, mode := path, "", ""
	for p := path; ; p = filepath.Dir(p) {
		if fi, serr := os.Stat(p); serr == nil {
			at, mode = p, fmt.Sprintf("%04o", fi.Mode().Perm())
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				owner = userName(st.Uid)
			}
			break
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	msg := fmt.Sprintf("%s %s: permission denied for %s", flag, path, me)
	if owner != "" {
		msg += fmt.Sprintf("; %s is owned by %s, mode %s", at, owner, mode)
	}
	u := me
	if i := strings.IndexByte(u, ' '); i > 0 {
		u = u[:i]
	}
	switch {
	case at == path:
		msg += fmt.Sprintf(": run 'sudo chown -R %s: %s' (or 'sudo chmod u+rw %s'), or run as %s", u, path, path, owner)
	case dir:
		msg += fmt.Sprintf(": make it for %s with 'sudo install -d -o %s -m 0700 %s'", u, u, path)
	}
	if fix != "" {
		msg += "; " + fix
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// Whoami is "name (uid N)" for this process's effective user.
func Whoami() string {
	uid := os.Geteuid()
	return fmt.Sprintf("%s (uid %d)", userName(uint32(uid)), uid)
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return strconv.Itoa(int(uid))
}

// CredsFix is what to do about a credentials file that cannot be read.
const CredsFix = "a credentials file is a secret: keep it mode 0600, owned by the user that uses it (the agent's unit reads it as root with LoadCredential=: deploy/systemd/fleet-agent.service)"
