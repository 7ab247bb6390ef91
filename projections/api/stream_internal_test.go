package api

import (
	"fmt"
	"testing"

	"github.com/matryer/is"
)

// A client that does not read holds at most maxPendingIDs ids: more
// changes collapse into one "all" notice, so a slow client costs a bounded
// amount of memory however busy the fleet is.
func TestSlowSubscriberHoldsABoundedNotice(t *testing.T) {
	is := is.New(t)
	h := newHub()
	s, unsub, err := h.subscribe()
	is.NoErr(err)
	defer unsub()
	h.publish([]string{"pi-02", "pi-01", "pi-02"})
	ids, all := s.take()
	is.Equal(ids, []string{"pi-01", "pi-02"}) // each once, sorted
	is.True(!all)
	for i := range 10 * maxPendingIDs {
		h.publish([]string{fmt.Sprintf("pi-%05d", i)})
		is.True(len(s.pending) <= maxPendingIDs+1)
	}
	ids, all = s.take()
	is.True(all)
	is.Equal(len(ids), 0)
	is.Equal(len(s.wake), 1) // one wake-up pending, not one per change
}
