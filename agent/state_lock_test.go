package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// TestSecondAgentOnAStateInUseTouchesNothing: a second agent on a state
// directory in use (say `fleet agent --deregister` beside the daemon) is
// refused by the store's lock before it touches anything else there: the
// running agent's spares stay ready.
func TestSecondAgentOnAStateInUseTouchesNothing(t *testing.T) {
	is := is.New(t)
	state, root := t.TempDir(), t.TempDir()
	quiet := WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	a, err := New("lock-01", WithStateDir(state), WithRoot(root), quiet)
	is.NoErr(err)
	defer a.Close()
	f := a.recs[events.KindFile].(*reconcile.File)
	_, err = f.Apply(context.Background(), reconcile.Target{Generation: 1, Resource: events.Resource{ID: "a", Kind: events.KindFile,
		File: &events.FileSpec{Path: "/etc/a.conf", Content: "a\n"}}})
	is.NoErr(err)
	f.WaitSpares()
	fresh := filepath.Join(state, "spares", "fresh")
	before, err := os.ReadDir(fresh)
	is.NoErr(err)
	is.Equal(len(before), 1) // one spare ready

	_, err = New("lock-01", WithStateDir(state), WithRoot(root), quiet)
	is.True(err != nil) // the store is locked
	after, err := os.ReadDir(fresh)
	is.NoErr(err)
	is.Equal(len(after), 1)
	is.Equal(after[0].Name(), before[0].Name()) // the same spare, untouched
}
