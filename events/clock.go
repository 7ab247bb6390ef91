package events

import (
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// ParseULID parses an event id.
func ParseULID(s string) (ulid.ULID, error) { return ulid.ParseStrict(s) }

// ClockState is what a writer persists so that its clock never runs backwards
// across restarts: the last event time and id it handed out, and, for a
// writer that numbers its events (Event.Writer), its incarnation, its last
// sequence and the correction it applies to its wall clock.
type ClockState struct {
	LastAt time.Time     `json:"lastAt"`
	LastID string        `json:"lastId"`
	Writer string        `json:"writer,omitempty"`
	Seq    uint64        `json:"seq,omitempty"`
	Offset time.Duration `json:"offsetNs,omitempty"` // subtracted from the wall clock (see Correct)
}

// NewWriter returns a new writer incarnation id (a ULID) for ClockState.Writer.
func NewWriter() string { return ulid.Make().String() }

// Clock stamps a writer's events with times and ULIDs that never go backwards,
// even when the wall clock does (a Pi that boots without a real-time clock, an
// NTP step). If the wall clock is behind the last stamp, the stamp advances by
// one nanosecond (and the id by one) instead. The one exception is Correct:
// a writer that measured its clock against the server's may move its stamps
// back to real time, and says so in a ClockSkewDetected event; its order is
// then that of its sequence (Event.WriterSeq), which never goes back. Safe
// for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    func() time.Time
	last   time.Time
	id     ulid.ULID
	writer string
	seq    uint64
	offset time.Duration
}

// NewClock starts a clock from a persisted state (the zero state for a new writer).
// now may be nil for time.Now.
func NewClock(state ClockState, now func() time.Time) (*Clock, error) {
	if now == nil {
		now = time.Now
	}
	c := &Clock{now: now, last: state.LastAt, writer: state.Writer, seq: state.Seq, offset: state.Offset}
	if state.LastID != "" {
		id, err := ulid.ParseStrict(state.LastID)
		if err != nil {
			return nil, fmt.Errorf("clock state last id %q: %w", state.LastID, err)
		}
		c.id = id
	}
	if state.Writer != "" {
		if _, err := ulid.ParseStrict(state.Writer); err != nil {
			return nil, fmt.Errorf("clock state writer %q: %w", state.Writer, err)
		}
	}
	return c, nil
}

// Next returns the next event time and id. Both are strictly greater than any
// returned before by this clock or by the clock whose state it was started
// from, unless Correct moved the clock back in between.
func (c *Clock) Next() (time.Time, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.next()
}

// next is Next with c.mu held.
func (c *Clock) next() (time.Time, string) {
	t := c.now().Add(-c.offset).UTC().Round(0)
	if !t.After(c.last) {
		t = c.last.Add(time.Nanosecond)
	}
	c.last = t
	ms := ulid.Timestamp(t)
	if ms < c.id.Time() {
		ms = c.id.Time()
	}
	var id ulid.ULID
	if ms == c.id.Time() {
		id = c.id
		if err := increment(&id); err != nil { // 2^80 ids in one millisecond: move to the next one
			id = ulid.ULID{}
			_ = id.SetTime(ms + 1)
		}
	} else {
		id = ulid.MustNew(ms, rand.Reader)
	}
	c.id = id
	return t, id.String()
}

// Stamp sets e's At and ID from Next and, for a clock with a writer, its
// Writer and the writer's next sequence.
func (c *Clock) Stamp(e *Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.At, e.ID = c.next()
	if c.writer != "" {
		c.seq++
		e.Writer, e.WriterSeq = c.writer, c.seq
	}
}

// Last returns the last time stamped (zero: none yet).
func (c *Clock) Last() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Offset returns the correction subtracted from the wall clock.
func (c *Clock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Correct makes the clock stamp the wall clock minus offset from now on (0:
// the wall clock as it is), offset being the wall clock's measured lead on
// real time. If the last stamp is more than tolerance ahead of the corrected
// time, the clock runs back to it: later stamps follow real time again
// instead of a last stamp in the future, and ranBack is true; ids restart
// from the corrected time too (still unique: their random part). Only a
// clock with a writer may run back (its order is its sequence): one without
// keeps its last stamp as a floor. Returns the last stamp before.
func (c *Clock) Correct(offset, tolerance time.Duration) (lastBefore time.Time, ranBack bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	lastBefore = c.last
	c.offset = offset
	real := c.now().Add(-offset).UTC().Round(0)
	if c.writer != "" && c.last.Sub(real) > tolerance {
		c.last = real.Add(-time.Nanosecond)
		c.id = ulid.ULID{}
		ranBack = true
	}
	return lastBefore, ranBack
}

// State returns what to persist to resume this clock.
func (c *Clock) State() ClockState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ClockState{LastAt: c.last, Writer: c.writer, Seq: c.seq, Offset: c.offset}
	if c.id != (ulid.ULID{}) {
		s.LastID = c.id.String()
	}
	return s
}

// increment adds one to the 80-bit entropy part of id.
func increment(id *ulid.ULID) error {
	for i := len(id) - 1; i >= 6; i-- {
		id[i]++
		if id[i] != 0 {
			return nil
		}
	}
	return fmt.Errorf("ulid entropy overflow")
}
