package agentcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// TestParkedListsWhatTheLogRefused: an event too large for the stream is
// parked by the drain; `fleet agent --parked` lists it (table and JSON),
// with its id and the log's answer.
func TestParkedListsWhatTheLogRefused(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	env := eventstest.Start(t, true)
	env.LimitMessageSize(t, 4096)

	state, root := t.TempDir(), t.TempDir()
	a, err := agent.New("big-01", agent.WithLog(jsstore.NewLazy(env.Conn)), agent.WithStateDir(state), agent.WithRoot(root), agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	is.NoErr(err)
	is.NoErr(a.Deregister(ctx, strings.Repeat("a very long reason ", 400))) // about 7.6 kB
	is.NoErr(a.Flush(ctx, env.Conn))
	is.Equal(a.Parked(), 1)
	is.NoErr(a.Close())

	var out bytes.Buffer
	cmd := agentcli.Cmd{Device: "big-01", Root: root, State: state, DriftInterval: 60e9, Concurrency: 1, Parked: true, Format: "json"}
	is.NoErr(cmd.Exec(ctx, env.Conn, jsstore.NewLazy(env.Conn), &out))
	var listed []agent.ParkedEvent
	is.NoErr(json.Unmarshal(out.Bytes(), &listed))
	is.Equal(len(listed), 1)
	is.True(strings.Contains(listed[0].Error, "maximum"))
	var e events.Event
	is.NoErr(json.Unmarshal(listed[0].Event, &e)) // the event itself, as JSON
	is.Equal(e.Type, "DeviceDeregistered")
	is.Equal(e.ID, listed[0].ID)

	out.Reset()
	cmd.Format = "table"
	is.NoErr(cmd.Exec(ctx, env.Conn, jsstore.NewLazy(env.Conn), &out))
	is.True(strings.Contains(out.String(), listed[0].ID))
	is.True(strings.Contains(out.String(), "REFUSED WITH"))
}
