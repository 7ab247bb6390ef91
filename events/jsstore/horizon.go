package jsstore

import (
	"context"
	"time"
)

// LogStart returns where the log begins now: the stream's first sequence
// and the stream time of that message (a retention policy or damage may
// have removed the first events). Errors wrap events.ErrUnavailable.
func (s *Store) LogStart(ctx context.Context) (firstSeq uint64, firstTime time.Time, err error) {
	st, err := s.State(ctx)
	if err != nil {
		return 0, time.Time{}, err
	}
	return st.FirstSeq, st.FirstTime, nil
}
