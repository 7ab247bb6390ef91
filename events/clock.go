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
// across restarts: the last event time and id it handed out.
type ClockState struct {
	LastAt time.Time `json:"lastAt"`
	LastID string    `json:"lastId"`
}

// Clock stamps a writer's events with times and ULIDs that never go backwards,
// even when the wall clock does (a Pi that boots without a real-time clock, an
// NTP step). If the wall clock is behind the last stamp, the stamp advances by
// one nanosecond (and the id by one) instead. Safe for concurrent use.
type Clock struct {
	mu   sync.Mutex
	now  func() time.Time
	last time.Time
	id   ulid.ULID
}

// NewClock starts a clock from a persisted state (the zero state for a new writer).
// now may be nil for time.Now.
func NewClock(state ClockState, now func() time.Time) (*Clock, error) {
	if now == nil {
		now = time.Now
	}
	c := &Clock{now: now, last: state.LastAt}
	if state.LastID != "" {
		id, err := ulid.ParseStrict(state.LastID)
		if err != nil {
			return nil, fmt.Errorf("clock state last id %q: %w", state.LastID, err)
		}
		c.id = id
	}
	return c, nil
}

// Next returns the next event time and id. Both are strictly greater than any
// returned before by this clock or by the clock whose state it was started from.
func (c *Clock) Next() (time.Time, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now().UTC().Round(0)
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

// Stamp sets e's At and ID from Next.
func (c *Clock) Stamp(e *Event) {
	e.At, e.ID = c.Next()
}

// State returns what to persist to resume this clock.
func (c *Clock) State() ClockState {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := ClockState{LastAt: c.last}
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
