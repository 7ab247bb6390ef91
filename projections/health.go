package projections

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// LogCheckInterval is how often the running service compares the stream's
// first and last sequence with its checkpoint.
var LogCheckInterval = 2 * time.Second

// StallAfter is how long the checkpoint may stand still while the stream
// holds later events before the service counts as stalled (a message the
// server cannot deliver, such as one damaged inside its body).
var StallAfter = 15 * time.Second

// Health is the service's verdict on the log it folds.
type Health struct {
	OK          bool   `json:"ok"`
	Reason      string `json:"reason,omitempty"` // what is wrong, with the numbers
	Action      string `json:"action,omitempty"` // what the operator should do
	Checkpoint  uint64 `json:"checkpoint"`
	StreamFirst uint64 `json:"streamFirst"`
	StreamLast  uint64 `json:"streamLast"`
}

// RebuildAction is what to do when the log no longer holds what a derived
// store has folded.
const RebuildAction = "restore the server's data directory (jetstream/) from a backup and restart, " +
	"or accept the log as it is now: 'fleet project --rebuild --remote' (or 'fleet project --rebuild' for a " +
	"separate service) folds it again from its first sequence, after which new events are applied"

// CheckLog compares a stream's state with the checkpoint of a store derived
// from it (what of the stream it has taken in). It returns "" when the store
// can go on, else why not: the stream ends before the checkpoint (it went
// backwards: stored events were lost, and new events would get sequences
// the store has already passed), or it starts after the checkpoint's next
// sequence (events left the log before the store took them in). what names
// the store in the reason.
func CheckLog(what string, first, last, msgs, checkpoint uint64) string {
	switch {
	case last < checkpoint:
		return fmt.Sprintf("the log went backwards: stream %s ends at sequence %d but %s has taken it in up to %d: "+
			"%d stored events are gone (a damaged or replaced store; see the server's log), and new events would "+
			"reuse sequences already applied", events.Stream, last, what, checkpoint, checkpoint-last)
	case msgs > 0 && first > checkpoint+1:
		return fmt.Sprintf("events left the log before %s took them in: stream %s starts at sequence %d, %s has "+
			"taken it in up to %d (sequences %d to %d are gone: retention limits or damage)",
			what, events.Stream, first, what, checkpoint, checkpoint+1, first-1)
	}
	return ""
}

// logGuard holds the service back from a log that went backwards.
type logGuard struct {
	mu     sync.Mutex
	bad    *Health            // set while halted
	cancel context.CancelFunc // stops the running consumer
	last   Health             // last check
	cp     uint64             // checkpoint at the last check
	since  time.Time          // since when cp stands still with later events on the stream
	wake   chan struct{}      // closed and replaced when the halt is lifted
}

// Health reports whether the service is applying the log, and if not, why
// and what to do. It is the last check's result (see LogCheckInterval).
func (s *Service) Health() Health {
	full := s.storeFull() // before the guard's lock: it takes s.mu
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	if s.guard.bad != nil {
		return *s.guard.bad
	}
	h := s.guard.last
	h.OK, h.Checkpoint = true, s.Checkpoint()
	if full != nil { // not a damaged message: the store's disk (storeopts.go)
		h.OK, h.Reason, h.Action = false, full.Error(), StoreFullAction
		return h
	}
	if !s.rebuilding.Load() && !s.guard.since.IsZero() && time.Since(s.guard.since) >= StallAfter && h.Checkpoint == s.guard.cp {
		h.OK = false
		h.Reason = fmt.Sprintf("%s %s not moved from sequence %d for %s while stream %s holds events up to %d: "+
			"the message at sequence %d may be damaged (the server cannot deliver it)", s.the(), s.verb("have", "has"), h.Checkpoint,
			time.Since(s.guard.since).Round(time.Second), events.Stream, h.StreamLast, h.Checkpoint+1)
		h.Action = fmt.Sprintf("see the server's log; 'nats stream get %s %d' shows whether the message reads; restore the data "+
			"directory from a backup", events.Stream, h.Checkpoint+1)
	}
	return h
}

// Halted reports whether the service stopped applying the log.
func (s *Service) Halted() bool {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	return s.guard.bad != nil
}

// checkLog compares the stream with the checkpoint once; on a problem it
// halts the service (the consumer is stopped, nothing more is applied).
func (s *Service) checkLog(ctx context.Context, log Log) {
	cp := s.Checkpoint() // before the stream's state: a healthy stream is at or past it
	state, err := log.State(ctx)
	if err != nil {
		return // unavailable: not a verdict on the log
	}
	s.noteLast(state.LastSeq) // also while the consumer is stuck: Stalled compares it with the checkpoint
	h := Health{OK: true, Checkpoint: cp, StreamFirst: state.FirstSeq, StreamLast: state.LastSeq}
	if s.rebuilding.Load() {
		return // a rebuild is making a new checkpoint
	}
	reason := CheckLog(s.the(), state.FirstSeq, state.LastSeq, state.Msgs, cp)
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	s.guard.last = h
	switch {
	case state.LastSeq <= cp || cp != s.guard.cp:
		s.guard.since = time.Time{} // caught up, or moving
	case s.guard.since.IsZero():
		s.guard.since = time.Now()
	}
	s.guard.cp = cp
	if reason == "" || s.guard.bad != nil {
		return
	}
	h.OK, h.Reason, h.Action = false, reason, s.logAction
	s.guard.bad = &h
	if s.guard.cancel != nil {
		s.guard.cancel()
	}
}

// watchLog runs checkLog every LogCheckInterval until ctx is done.
func (s *Service) watchLog(ctx context.Context, log Log) {
	t := time.NewTicker(LogCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.checkLog(ctx, log)
	}
}

// consumeContext returns the context one consumer runs under (the guard
// cancels it on a halt), or false while the service is halted; it then
// waits for the halt to be lifted (a rebuild) or ctx to end.
func (s *Service) consumeContext(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	s.guard.mu.Lock()
	if s.guard.wake == nil {
		s.guard.wake = make(chan struct{})
	}
	if s.guard.bad != nil {
		wake := s.guard.wake
		s.guard.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-wake:
		}
		return nil, nil, false
	}
	cctx, cancel := context.WithCancel(ctx)
	s.guard.cancel = cancel
	s.guard.mu.Unlock()
	return cctx, cancel, true
}

// liftHalt is called when a rebuild swapped in models of the log as it is.
func (s *Service) liftHalt() {
	s.guard.mu.Lock()
	defer s.guard.mu.Unlock()
	if s.guard.bad == nil {
		return
	}
	s.guard.bad = nil
	if s.guard.wake != nil {
		close(s.guard.wake)
	}
	s.guard.wake = make(chan struct{})
}
