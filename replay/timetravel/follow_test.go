package timetravel_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// The time-travel index is the read side's runtime with its own model
// (projections.Service): these tests show it keeps the runtime's
// guarantees as the projection service does (projections' runtime_test,
// recover_test and the log guard): a failure is logged with its cause and
// counted, not dropped; a log that went backwards halts it with the reason
// and what to do; a damaged store is rebuilt (recover_test.go).

// TestIndexLogsWhyItCannotFollow: when the log goes away, the index's
// consumer says so on its logger with the cause (it used to drop the
// error), and its counters carry the failure and its cause.
func TestIndexLogsWhyItCannotFollow(t *testing.T) {
	env := eventstest.Start(t, true)
	var out eventstest.Buffer
	x, err := timetravel.Open(t.TempDir(), timetravel.WithLogger(slog.New(slog.NewTextHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.Follow(ctx, env.Store)
	}()
	defer func() { cancel(); <-done }()
	env.Stop() // the server goes away under the index
	eventstest.WaitFor(t, 20*time.Second, "a logged failure", func() bool {
		return strings.Contains(out.String(), "following the log failed")
	})
	if s := out.String(); !strings.Contains(s, "err=") || !strings.Contains(s, "connection closed") ||
		!strings.Contains(s, timetravel.Name) {
		t.Fatalf("the failure is logged without its cause or without the index's name: %s", s)
	}
	st := x.RunStats()
	if st.Failures == 0 || !strings.Contains(st.LastFailure, "connection closed") {
		t.Fatalf("the failure is not in the index's counters: %+v", st)
	}
}

// TestIndexHaltsOnALogThatWentBackwards: an index that has taken in 1,200
// events, started on a log of 400 (a replaced or damaged stream), takes
// in nothing, and its health says why and what to do, as the projection
// service's does.
func TestIndexHaltsOnALogThatWentBackwards(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 3, Events: 1200})
	loadLog(t, env, evs)
	dir := t.TempDir()
	x, stop := startIndex(t, env, dir, 32)
	waitFor(t, x, 1200)
	is.True(x.Health().OK)
	stop()

	short := eventstest.Start(t, true) // another stream: 400 events
	loadLog(t, short, evs[:400])
	x, stop = startIndex(t, short, dir, 32)
	defer stop()
	eventstest.WaitFor(t, 20*time.Second, "the index halted", func() bool { return !x.Health().OK })
	h := x.Health()
	t.Log(h.Reason)
	is.True(strings.Contains(h.Reason, "went backwards"))
	is.True(strings.Contains(h.Reason, "the time-travel index"))
	is.True(strings.Contains(h.Action, dir)) // remove the index: it is built again
	is.Equal(x.Checkpoint(), uint64(1200))   // nothing taken in from the shorter log
}
