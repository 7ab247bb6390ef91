package projections

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestFailureLogSaysWhyOnceAMinuteWithACount: the first failure is logged
// with its cause at once; while failures go on, one line a minute says how
// many there were; progress logs the recovery and starts over.
func TestFailureLogSaysWhyOnceAMinuteWithACount(t *testing.T) {
	is := is.New(t)
	var out bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFailureLog(slog.New(slog.NewTextHandler(&out, nil)), "index follow failed", func() time.Time { return now })
	lines := func() []string { return strings.Split(strings.TrimSpace(out.String()), "\n") }

	f.Failed(errors.New("nats: no responders"), 42)
	is.Equal(len(lines()), 1)
	is.True(strings.Contains(lines()[0], `err="nats: no responders"`)) // the cause
	is.True(strings.Contains(lines()[0], "checkpoint=42"))
	for range 59 { // one a second for the rest of the minute: no more lines
		now = now.Add(time.Second)
		f.Failed(errors.New("nats: no responders"), 42)
	}
	is.Equal(len(lines()), 1)
	now = now.Add(time.Second)
	f.Failed(errors.New("write: disk full"), 42)
	is.Equal(len(lines()), 2)
	is.True(strings.Contains(lines()[1], `err="write: disk full"`))
	is.True(strings.Contains(lines()[1], "failures=61"))
	is.True(strings.Contains(lines()[1], "failuresSinceLastLog=60"))

	f.OK()
	is.Equal(len(lines()), 3)
	is.True(strings.Contains(lines()[2], "recovered"))
	f.OK() // progress without failures logs nothing
	is.Equal(len(lines()), 3)
	f.Failed(errors.New("again"), 50) // a new run of failures: logged at once
	is.Equal(len(lines()), 4)
}
