package reconcile_test

import (
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

func TestDefaultsCoverEveryKind(t *testing.T) {
	is := is.New(t)
	var kinds []string
	for _, r := range reconcile.Defaults(reconcile.Options{Root: t.TempDir(), StateDir: t.TempDir()}) {
		kinds = append(kinds, r.Kind())
	}
	is.Equal(kinds, events.Kinds)
	var _ reconcile.Watcher = reconcile.NewFile("/") // files report changes as they happen
}
