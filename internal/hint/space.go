package hint

import (
	"fmt"
	"syscall"
)

// Space returns the bytes free (to an unprivileged writer) and in all on
// the file system that holds dir: what the agent's and the server's stores
// check before they write, so that a full disk is said in a line instead
// of found by the store mid-write.
func Space(dir string) (free, total uint64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		return 0, 0, err
	}
	return fs.Bavail * uint64(fs.Bsize), fs.Blocks * uint64(fs.Bsize), nil
}

// Bytes is n bytes as people read it: 1.5 GiB, 3.2 MiB, 512 KiB.
func Bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}
