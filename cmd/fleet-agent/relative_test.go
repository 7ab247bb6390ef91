package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestRelativeRootAndStateWork: `fleet-agent --root ./root --state ./state`
// started in a directory converges a file resource under that directory's
// root (a relative root used to make every file PathEscapesRoot), and keeps
// its store in ./state.
func TestRelativeRootAndStateWork(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	dir := t.TempDir()
	is.NoErr(os.Mkdir(filepath.Join(dir, "root"), 0o755))
	t.Chdir(dir)

	var cli CLI
	is.NoErr(parseFlags(&cli, []string{"--nats", env.Server.URL(), "--device", "rel-01",
		"--root", "./root", "--state", "./state", "--drift-interval", "1h"}, func(string) string { return "" }))
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"relative\\n\"}\n"))
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	_, err = events.Apply(context.Background(), env.Store, clock, "rel-01", m, "user:ops", nil)
	is.NoErr(err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- exec(ctx, &cli) }()
	motd := filepath.Join(dir, "root", "etc", "motd")
	eventstest.WaitFor(t, 15*time.Second, "the file under the relative root", func() bool {
		b, _ := os.ReadFile(motd)
		return string(b) == "relative\n"
	})
	ready := func() bool {
		for st, err := range env.Store.Read(context.Background(), events.Filter{Device: "rel-01", Types: []string{events.TypeStatusChanged}}) {
			if err != nil {
				continue
			}
			p, _ := st.Payload()
			if sc := p.(*events.StatusChanged); sc.To == "Ready" {
				return true
			}
		}
		return false
	}
	eventstest.WaitFor(t, 15*time.Second, "motd Ready on the log", ready)
	cancel()
	is.NoErr(<-done)
	_, err = os.Stat(filepath.Join(dir, "state", "store"))
	is.NoErr(err) // the store is in ./state of the start directory
}
