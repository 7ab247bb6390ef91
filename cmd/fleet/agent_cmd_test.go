package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alecthomas/kong"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestAgentRelativeRootAndStateWork: `fleet agent --root ./root --state
// ./state`, parsed by kong as `fleet` parses it, converges a file resource
// under the start directory's root (a relative root used to make every file
// PathEscapesRoot) and keeps its store in ./state.
func TestAgentRelativeRootAndStateWork(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	dir := t.TempDir()
	is.NoErr(os.Mkdir(filepath.Join(dir, "root"), 0o755))
	t.Chdir(dir)

	var cmd AgentCmd
	parser, err := kong.New(&cmd, kong.Exit(func(int) { t.Fatal("kong exited") }))
	is.NoErr(err)
	_, err = parser.Parse([]string{"--device", "rel-02", "--root", "./root", "--state", "./state", "--drift-interval", "1h"})
	is.NoErr(err)
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"relative\\n\"}\n"))
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	_, err = events.Apply(context.Background(), env.Store, clock, "rel-02", m, "user:ops", nil)
	is.NoErr(err)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.Run(ctx, &Globals{NATS: env.Server.URL()}) }()
	motd := filepath.Join(dir, "root", "etc", "motd")
	eventstest.WaitFor(t, 15*time.Second, "the file under the relative root", func() bool {
		b, _ := os.ReadFile(motd)
		return string(b) == "relative\n"
	})
	eventstest.WaitFor(t, 15*time.Second, "motd Ready on the log", func() bool {
		for st, err := range env.Store.Read(context.Background(), events.Filter{Device: "rel-02", Types: []string{events.TypeStatusChanged}}) {
			if err != nil {
				continue
			}
			if p, _ := st.Payload(); p.(*events.StatusChanged).To == "Ready" {
				return true
			}
		}
		return false
	})
	cancel()
	is.NoErr(<-done)
	_, err = os.Stat(filepath.Join(dir, "state", "store"))
	is.NoErr(err) // the store is in ./state of the start directory
}
