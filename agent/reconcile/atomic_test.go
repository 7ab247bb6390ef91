package reconcile

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestStillAtSeesAnyLaterChange: the identity writeTemp returns matches the
// file after the rename, and no longer once its content, mode or inode
// changed.
func TestStillAtSeesAnyLaterChange(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	full := filepath.Join(dir, "f")
	put := func() fileID {
		tmp, id, _, err := writeTemp(nil, dir, "f", []byte("abc\n"), 0o640, -1, -1)
		is.NoErr(err)
		is.NoErr(os.Rename(tmp, full))
		return id
	}
	id := put()
	is.True(stillAt(full, id)) // what was written is what is there

	time.Sleep(10 * time.Millisecond) // a later mtime
	is.NoErr(os.WriteFile(full, []byte("abd\n"), 0o640))
	is.True(!stillAt(full, id)) // same inode and size, other content: seen

	id = put()
	is.NoErr(os.Chmod(full, 0o600))
	is.True(!stillAt(full, id)) // mode changed: seen

	id = put()
	put()
	is.True(!stillAt(full, id)) // replaced by another file: seen
	is.NoErr(os.Remove(full))
	is.True(!stillAt(full, id)) // gone: seen
}
