package hint

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Tests run as root, whom the kernel never denies: the permission errors
// are made here as the kernel makes them (EACCES from open or mkdir).

// TestPermissionSaysWhoWhereAndWhatToRun: the user this runs as, the path's
// owner and mode (the nearest parent that exists), and the chown to run.
func TestPermissionSaysWhoWhereAndWhatToRun(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "fleet", "store")
	cause := fmt.Errorf("data directory %s: %w", missing, &fs.PathError{Op: "mkdir", Path: missing, Err: syscall.EACCES})
	err := PermissionDir(cause, missing, "--data", "under systemd: StateDirectory=fleet")
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"--data " + missing + ": permission denied for " + Whoami(),
		dir + " is owned by root, mode 0755", "make it for root with 'sudo install -d -o root -m 0700 " + missing + "'", "StateDirectory=fleet"} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in %q", want, msg)
		}
	}
	if !errors.Is(err, fs.ErrPermission) || !errors.Is(err, syscall.EACCES) {
		t.Error("the cause is kept")
	}
	if strings.Contains(msg, "chown") {
		t.Error("never a chown of a parent")
	}
	// an existing file: its chown
	creds := filepath.Join(dir, "device.creds")
	if err := os.WriteFile(creds, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	msg = Permission(&fs.PathError{Op: "open", Path: creds, Err: syscall.EACCES}, creds, "--creds", CredsFix).Error()
	for _, want := range []string{creds + " is owned by root, mode 0600", "sudo chown -R root: " + creds, "LoadCredential="} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in %q", want, msg)
		}
	}
	other := errors.New("disk full")
	if Permission(other, missing, "--data", "") != other {
		t.Error("another error comes back as it is")
	}
}

// TestPortHolderFindsThisProcess: the listening socket's owner from
// /proc/net/tcp and /proc/self/fd.
func TestPortHolderFindsThisProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pid, ok := PortHolder(ln.Addr().String())
	if !ok || pid != os.Getpid() {
		t.Fatalf("PortHolder = %d, %v; want %d", pid, ok, os.Getpid())
	}
	if got := Process(pid); got != fmt.Sprintf("PID %d (this process)", pid) {
		t.Errorf("Process = %q", got)
	}
}
