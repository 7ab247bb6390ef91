package projections

import (
	"log/slog"
	"sync"
	"time"
)

// FailureLog logs the failures of a long-running consumer (the projection
// service, the time-travel index) with their cause, without flooding the
// log while a failure lasts: the first failure of a run at once, then at
// most one line a minute saying how many failures there were since the
// last line, and one line when the consumer makes progress again. It
// counts failures for /metrics and keeps the current run's last cause for
// /healthz. Safe for concurrent use.
type FailureLog struct {
	log  *slog.Logger
	what string
	now  func() time.Time

	mu       sync.Mutex
	total    int       // failures since the last progress
	unlogged int       // failures since the last line
	last     time.Time // when the last line was written
	all      uint64    // failures since start
	cause    string    // the current run's last failure; "" after progress
}

// NewFailureLog logs to log (nil: slog.Default) with what as the message;
// now is the clock (nil: time.Now).
func NewFailureLog(log *slog.Logger, what string, now func() time.Time) *FailureLog {
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &FailureLog{log: log, what: what, now: now}
}

// Failed records one failure; checkpoint is how far the consumer has got.
func (f *FailureLog) Failed(err error, checkpoint uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total++
	f.unlogged++
	f.all++
	f.cause = err.Error()
	now := f.now()
	if f.total == 1 || now.Sub(f.last) >= time.Minute {
		f.log.Warn(f.what, "err", err, "failures", f.total, "failuresSinceLastLog", f.unlogged, "checkpoint", checkpoint)
		f.unlogged, f.last = 0, now
	}
}

// OK records progress: a run of failures, if any, is over.
func (f *FailureLog) OK() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total > 0 {
		f.log.Info(f.what+": recovered", "failures", f.total)
	}
	f.total, f.unlogged, f.cause = 0, 0, ""
}

// Total is the number of failures since start.
func (f *FailureLog) Total() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.all
}

// Cause is the last failure's cause while a run of failures lasts, "" once
// the consumer has made progress since.
func (f *FailureLog) Cause() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cause
}
