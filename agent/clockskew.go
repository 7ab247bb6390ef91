package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// DefaultMaxClockSkew is how far the device's clock may be off the server's
// before the agent records ClockSkewDetected and stamps corrected times.
const DefaultMaxClockSkew = time.Minute

// clockCheckEvery is how often the agent measures its clock while connected
// (the first heartbeat after it attached measures at once). A measurement
// is a stream info request whose answer is about 1 kB: once a minute that
// was 1.4 MB a device a day on the wire, three quarters of an idle
// device's traffic, and 167 stream infos a second for 10,000 devices
// (fleet sim, BENCHMARKS.md). A clock that jumps is still caught at the
// next start and within ten minutes.
const clockCheckEvery = 10 * time.Minute

// WithMaxClockSkew sets how far the device's wall clock (or its last event
// time) may be off the server's time before the agent corrects its stamps
// and records ClockSkewDetected (DefaultMaxClockSkew by default).
func WithMaxClockSkew(d time.Duration) Option { return func(o *options) { o.maxClockSkew = d } }

// wall reads the agent's wall clock (WithClock's, or time.Now).
func (a *Agent) wall() time.Time {
	if a.o.now != nil {
		return a.o.now()
	}
	return time.Now()
}

// measureClock reads the server's time (the timestamp of a stream info
// answer, which a device's credentials may ask for) and the wall clock at
// the middle of the round trip.
func (a *Agent) measureClock(ctx context.Context, log events.ServerClock) (local, server time.Time, err error) {
	t0 := a.wall()
	server, err = log.ServerTime(ctx)
	t1 := a.wall()
	if err != nil {
		return local, server, err
	}
	return t0.Add(t1.Sub(t0) / 2), server, nil
}

// checkClock compares the wall clock (local) and the last event time with
// the server's time and, when either is off by more than the tolerance or a
// correction in force is no longer needed, corrects the writer clock and
// records ClockSkewDetected in the same local commit. The event is stamped
// with the corrected time: if the stamps had run ahead (a clock that was
// ahead and persisted), it is the point where event times run back to real
// time, and the writer sequence keeps the order. It reports whether it
// recorded an event.
func (a *Agent) checkClock(local, server time.Time) (bool, error) {
	tol := a.o.maxClockSkew
	skew := local.Sub(server)
	want := time.Duration(0)
	if skew > tol || skew < -tol {
		want = skew
	}
	cur := a.clock.Offset()
	drift := want - cur
	ahead := a.clock.Last().Sub(server)
	if (drift <= tol && drift >= -tol) && (want != 0 || cur == 0) && ahead <= tol {
		return false, nil // in line: nothing to say
	}
	if drift <= tol && drift >= -tol {
		want = cur // the same correction, measured again: keep it steady
	}
	t := a.begin()
	last, ranBack := a.clock.Correct(want, tol)
	p := &events.ClockSkewDetected{Offset: skew, Tolerance: tol, ServerTime: server.UTC(), LastStamp: last,
		Corrected: want != 0, RanBack: ranBack, Source: "stream-info"}
	if _, err := t.emit("", a.Generation(), "", "", p); err != nil {
		t.abort()
		return false, err
	}
	if _, err := t.commit(); err != nil {
		return false, fmt.Errorf("record clock skew: %w", err)
	}
	switch {
	case want != 0:
		a.log.Warn("clock skew: the device's clock is off the server's; events are stamped with the corrected time (fix the device's time source: NTP or an RTC)",
			"offset", skew.Round(time.Millisecond).String(), "serverTime", server.UTC(), "lastStamp", last, "ranBack", ranBack)
	case ranBack:
		a.log.Warn("clock skew: event times had run ahead of the server's; they follow the server's time again",
			"lastStamp", last, "serverTime", server.UTC())
	default:
		a.log.Info("clock skew: the device's clock is back within tolerance of the server's; no correction", "offset", skew.Round(time.Millisecond).String())
	}
	return true, nil
}
