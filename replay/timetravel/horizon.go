package timetravel

import (
	"context"
	"fmt"
	"time"
)

// Horizon is where the log begins now: with a retention policy (or after
// damage) the first events are gone, and an answer about a time before the
// first event left cannot be complete.
type Horizon struct {
	FirstSeq  uint64    `json:"firstSeq"`
	FirstTime time.Time `json:"firstTime"` // stream time of the first event left
}

// LogStarter says where the log begins now (jsstore.Store does).
type LogStarter interface {
	LogStart(ctx context.Context) (firstSeq uint64, firstTime time.Time, err error)
}

// LogHorizon reads the log's first sequence and its time.
func LogHorizon(ctx context.Context, log LogStarter) (Horizon, error) {
	seq, at, err := log.LogStart(ctx)
	if err != nil {
		return Horizon{}, fmt.Errorf("log horizon: %w", err)
	}
	return Horizon{FirstSeq: seq, FirstTime: at}, nil
}

// Note says what the log no longer has for q, or "" when q asks about a
// time (or sequence) the log still covers.
func (h Horizon) Note(q Query) string {
	if h.FirstSeq <= 1 {
		return "" // nothing removed
	}
	asked := ""
	switch {
	case !q.At.IsZero() && q.At.Before(h.FirstTime):
		asked = q.At.UTC().Format(time.RFC3339)
	case q.At.IsZero() && q.Seq > 0 && q.Seq < h.FirstSeq:
		asked = fmt.Sprintf("sequence %d", q.Seq)
	default:
		return ""
	}
	return fmt.Sprintf("the log no longer has what came before %s (its first event now is sequence %d, stored %s; "+
		"sequences 1 to %d were removed by the retention policy or lost): this answer for %s may miss events; "+
		"the archive made with 'fleet export' has them",
		h.FirstTime.UTC().Format(time.RFC3339), h.FirstSeq, h.FirstTime.UTC().Format(time.RFC3339), h.FirstSeq-1, asked)
}
