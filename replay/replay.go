// Package replay reads ranges of the log back: filtering and printing them,
// verifying them against fleet's rules (Verify), exporting and importing them
// as NDJSON, and time travel (the state of a device at a past moment).
package replay

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a point in time as RFC 3339 ("2026-05-01T12:00:00Z") or as
// a duration before now ("90s", "15m", "2h", "7d"). An empty string is the
// zero time. Errors wrap nothing; callers mark them as bad input.
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, ok := parseAgo(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("time %q: must be RFC 3339 (2026-05-01T12:00:00Z) or a duration ago (90s, 15m, 2h, 7d)", s)
}

func parseAgo(s string) (time.Duration, bool) {
	if strings.HasSuffix(s, "d") {
		n, err := strconv.ParseFloat(strings.TrimSuffix(s, "d"), 64)
		if err != nil || n < 0 {
			return 0, false
		}
		return time.Duration(n * float64(24*time.Hour)), true
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}
