package timetravel_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// TestIndexLogsWhyItCannotFollow: when the log goes away, the index's
// consumer says so on its logger with the cause (it used to drop the error).
func TestIndexLogsWhyItCannotFollow(t *testing.T) {
	env := eventstest.Start(t, true)
	x, err := timetravel.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	var out eventstest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.Follow(ctx, env.Store, slog.New(slog.NewTextHandler(&out, nil)))
	}()
	defer func() { cancel(); <-done }()
	env.Stop() // the server goes away under the index
	eventstest.WaitFor(t, 20*time.Second, "a logged failure", func() bool {
		return strings.Contains(out.String(), "following the log failed")
	})
	if s := out.String(); !strings.Contains(s, "err=") || !strings.Contains(s, "connection closed") {
		t.Fatalf("the failure is logged without its cause: %s", s)
	}
}
