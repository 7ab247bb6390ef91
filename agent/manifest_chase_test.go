package agent

import (
	"testing"
	"time"
)

// TestManifestChaseOutlastsASlowStore: after a hint the watch reads again
// with doubling waits capped at chaseMaxWait for chaseHint (the stream may
// store the message seconds after the hint under load; the old chase gave
// up after about a second); after the first read one more read; a failed
// read keeps it going a minute; finding something ends it.
func TestManifestChaseOutlastsASlowStore(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	run := func(first, window time.Duration, failAt int) (reads int, span time.Duration) {
		var c chase
		at := now
		d, ok := c.next(at, false, false, first, window)
		for ok {
			at = at.Add(d)
			reads++
			if reads > 1000 {
				t.Fatal("chase never ends")
			}
			d, ok = c.next(at, false, reads == failAt, 0, 0)
		}
		return reads, at.Sub(now)
	}
	if reads, span := run(time.Millisecond, chaseHint, 0); span < chaseHint-chaseMaxWait || span > chaseHint || reads > 30 {
		t.Fatalf("after a hint: %d reads over %s, want about %s in at most 30 reads", reads, span, chaseHint)
	}
	if reads, span := run(chaseSettle, chaseSettle, 0); reads != 1 || span != chaseSettle {
		t.Fatalf("after the first read: %d reads over %s, want 1 after %s", reads, span, chaseSettle)
	}
	if _, span := run(chaseSettle, chaseSettle, 1); span < chaseFailed {
		t.Fatalf("a failed read: the chase lasted %s, want at least %s", span, chaseFailed)
	}
	var c chase
	c.next(now, false, false, time.Millisecond, chaseHint)
	if _, ok := c.next(now.Add(time.Millisecond), true, false, 0, 0); ok {
		t.Fatal("something new was found: the chase must end")
	}
	// A hint during the settle read's wait shortens the next wait.
	c = chase{}
	c.next(now, false, false, chaseSettle, chaseSettle)
	if d, ok := c.next(now, false, false, time.Millisecond, chaseHint); !ok || d != time.Millisecond {
		t.Fatalf("hint during a settle chase: next read after %s (%v), want 1ms", d, ok)
	}
}
