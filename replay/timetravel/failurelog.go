package timetravel

import (
	"log/slog"
	"sync"
	"time"
)

// failureLog logs the failures of a long-running consumer with their
// cause, without flooding the log while a failure lasts: the first failure
// of a run at once, then at most one line a minute saying how many
// failures there were since the last line, and one line when the consumer
// makes progress again. Safe for concurrent use.
type failureLog struct {
	log  *slog.Logger
	what string
	now  func() time.Time

	mu       sync.Mutex
	total    int       // failures since the last progress
	unlogged int       // failures since the last line
	last     time.Time // when the last line was written
}

func newFailureLog(log *slog.Logger, what string, now func() time.Time) *failureLog {
	if log == nil {
		log = slog.Default()
	}
	return &failureLog{log: log, what: what, now: now}
}

// failed records one failure; checkpoint is how far the consumer has got.
func (f *failureLog) failed(err error, checkpoint uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total++
	f.unlogged++
	now := f.now()
	if f.total == 1 || now.Sub(f.last) >= time.Minute {
		f.log.Warn(f.what, "err", err, "failures", f.total, "failuresSinceLastLog", f.unlogged, "checkpoint", checkpoint)
		f.unlogged, f.last = 0, now
	}
}

// ok records progress: a run of failures, if any, is over.
func (f *failureLog) ok() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total > 0 {
		f.log.Info(f.what+": recovered", "failures", f.total)
	}
	f.total, f.unlogged = 0, 0
}
