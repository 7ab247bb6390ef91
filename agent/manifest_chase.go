package agent

import "time"

// How long the manifest watch keeps reading after an event that says a
// manifest may be on its way (see watchManifests).
const (
	// chaseHint: after a hint. The hint is the core message, delivered
	// before the stream has stored it (with fsync before ack, on a loaded
	// server, more than a second later: the 1-second chase this replaces
	// gave up, and the agent waited for the 10-minute poll). A hint for a
	// publish the stream refused costs about 20 reads in this window.
	chaseHint = 30 * time.Second
	// chaseSettle: after the first read and each reconnect, one more read
	// this much later (a publish the server took just before the
	// subscription was in sends no hint, and may still be being stored).
	chaseSettle = 2 * time.Second
	// chaseFailed: a failed read keeps the chase going at least this long.
	chaseFailed = time.Minute
	// chaseMaxWait is the longest wait between two reads of a chase.
	chaseMaxWait = 2 * time.Second
)

// chase is the manifest watch's re-read schedule: waits doubling from the
// first one up to chaseMaxWait, until something new is read or the window
// closes.
type chase struct {
	wait  time.Duration
	until time.Time
}

// next reports whether to read again and after how long, given the outcome
// of the read just done. first and window start (or widen) a chase: zero
// for a read the chase itself scheduled.
func (c *chase) next(now time.Time, found, failed bool, first, window time.Duration) (time.Duration, bool) {
	if found {
		*c = chase{}
		return 0, false
	}
	if window > 0 {
		if end := now.Add(window); end.After(c.until) {
			c.until = end
		}
		if c.wait == 0 || first < c.wait {
			c.wait = first
		}
	} else {
		c.wait = min(2*c.wait, chaseMaxWait)
	}
	if failed {
		if end := now.Add(chaseFailed); end.After(c.until) {
			c.until = end
		}
	}
	if c.wait <= 0 || !now.Add(c.wait).Before(c.until.Add(time.Millisecond)) {
		*c = chase{}
		return 0, false
	}
	return c.wait, true
}
