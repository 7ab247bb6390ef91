package jsstore

import (
	"context"
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// LogStart returns where the log begins now: the stream's first sequence
// and the stream time of that message (a retention policy or damage may
// have removed the first events). Errors wrap events.ErrUnavailable.
func (s *Store) LogStart(ctx context.Context) (firstSeq uint64, firstTime time.Time, err error) {
	str, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("log start: %w", unavailable(err))
	}
	st := str.CachedInfo().State
	return st.FirstSeq, st.FirstTime, nil
}
