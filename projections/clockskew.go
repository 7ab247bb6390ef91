package projections

import (
	"fmt"
	"time"
)

// clockSkew is what the Fleet fold keeps of a device's last
// ClockSkewDetected, for the ClockSkew condition.
type clockSkew struct {
	Seq        uint64        `json:"seq"`
	At         time.Time     `json:"at"`
	Writer     string        `json:"writer,omitempty"`
	Offset     time.Duration `json:"offsetNs"`
	Tolerance  time.Duration `json:"toleranceNs"`
	ServerTime time.Time     `json:"serverTime"`
	LastStamp  time.Time     `json:"lastStamp"`
	Corrected  bool          `json:"corrected,omitempty"`
	RanBack    bool          `json:"ranBack,omitempty"`
}

// clockCondition is the ClockSkew condition: listed once the device's
// agent reported a clock measurement, and only while that report is from
// the agent's current writer (a wiped or re-flashed device starts a new
// one, whose clock is measured afresh). True while the device's wall clock
// is off from the server's by more than the agent's tolerance (its events
// are then stamped with the corrected time); False when it is within it,
// saying when stamps that had run ahead were moved back to real time.
func (d *deviceState) clockCondition() (Condition, bool) {
	k := d.Clock
	if k == nil || k.Writer != d.Writer {
		return Condition{}, false
	}
	c := Condition{Type: CondClockSkew}
	off := k.Offset
	dir := "ahead of"
	if off < 0 {
		off, dir = -off, "behind"
	}
	measured := k.ServerTime.UTC().Format(time.RFC3339)
	switch {
	case off > k.Tolerance:
		c.Status, c.Reason = True, "ClockAhead"
		if k.Offset < 0 {
			c.Reason = "ClockBehind"
		}
		c.Message = fmt.Sprintf("device clock %s %s the server's (measured %s, tolerance %s)", off.Round(time.Second), dir, measured, k.Tolerance)
		if k.Corrected {
			c.Message += "; the agent stamps events with the corrected time since sequence " + fmt.Sprint(k.Seq)
		}
	case k.RanBack:
		c.Status, c.Reason = False, "StampsMovedBack"
		c.Message = fmt.Sprintf("event times had run ahead to %s; back on the server's time since sequence %d (measured %s)",
			k.LastStamp.UTC().Format(time.RFC3339), k.Seq, measured)
	default:
		c.Status, c.Reason = False, "ClockInSync"
		c.Message = fmt.Sprintf("device clock within %s of the server's (measured %s)", k.Tolerance, measured)
	}
	return c, true
}
