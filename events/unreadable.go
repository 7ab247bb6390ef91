package events

import (
	"errors"
	"fmt"
)

// ErrUnreadable: the log counts a message it cannot deliver (its store may
// be damaged there). Read yields an *UnreadableError wrapping it in the
// message's place and goes on past it.
var ErrUnreadable = errors.New("cannot be read")

// UnreadableError names the messages a read could not get past: Seq to Last
// (Last == Seq for one), and what the log answered when asked for them.
type UnreadableError struct {
	Seq, Last uint64
	Err       error // the log's answer, if any
	// Missing, if set, is how many messages a read of some subjects
	// counted but could not get, somewhere before Seq (Last is 0): a read
	// of every subject names where.
	Missing uint64
}

func (u *UnreadableError) Error() string {
	if u.Missing > 0 {
		return fmt.Sprintf("%d message(s) the log counts for this read before sequence %d %v: the log may be damaged; 'fleet replay' of every device names the sequences",
			u.Missing, u.Seq, ErrUnreadable)
	}
	what := fmt.Sprintf("the message at sequence %d", u.Seq)
	if u.Last > u.Seq {
		what = fmt.Sprintf("the messages at sequences %d to %d", u.Seq, u.Last)
	}
	cause := ""
	if u.Err != nil {
		cause = fmt.Sprintf(" (%v)", u.Err)
	}
	return fmt.Sprintf("%s %v%s: the log may be damaged there; 'fleet replay --from-seq %d' reads past it, and a restore from a backup brings it back",
		what, ErrUnreadable, cause, u.Last+1)
}

func (u *UnreadableError) Unwrap() error { return ErrUnreadable }
