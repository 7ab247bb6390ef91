package jsstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// A read that stops short: a message damaged inside its body (its record
// header intact) is counted by the server but not delivered, and a
// consumer stops before it and waits for ever; a message lost from the
// store is skipped without a word. A read (not a follow) watches for both:
// when nothing has come for ReadStallAfter while the consumer still counts
// messages pending, it asks the log for the next message directly (a
// direct get, which a slow server answers too): a message it gets is
// handed on as read (a *BadMessage if it does not decode), one the log
// cannot give is an *events.UnreadableError in its place, and the read goes
// on from the sequence after it on a new consumer. A read of every subject
// also reports a jump in sequence (a hole the consumer skipped) that is not
// the retention limit's.

// ReadStallAfter is how long a read waits for its next message, while the
// log holds more for it, before it asks the log for that message directly.
var ReadStallAfter = 3 * time.Second

// errStalled is the cause of a stallWatch's context when nothing came.
var errStalled = errors.New("no message delivered")

// reader is the state of one read's fetcher (its goroutine's alone).
type reader struct {
	s      *Store
	f      events.Filter
	follow bool
	what   string
	src    *readSource
	watch  *stallWatch // nil when following
	all    bool        // a read of every subject: a jump in sequence is a hole
	next   uint64      // the sequence after the last one delivered
	pend   uint64      // pending after the last one delivered
}

func newReader(s *Store, f events.Filter, follow bool, what string, src *readSource) *reader {
	subj := f.Subjects()
	return &reader{s: s, f: f, follow: follow, what: what, src: src, next: max(f.FromSeq, 1), pend: src.pend,
		all: !follow && len(subj) == 1 && subj[0] == events.AllSubjects}
}

// handing says whether the fetcher is handing a chunk on (waiting for the
// decoders or the caller), which is progress, not a stall.
func (r *reader) handing(on bool) {
	if r.watch != nil {
		r.watch.handing.Store(on)
		r.watch.n.Add(1)
	}
}

func (r *reader) close() {
	if r.watch != nil {
		r.watch.stop()
	}
	r.src.close()
}

// pastStall gets the read past the message it has stopped before, adding
// that message (or an UnreadableError in its place) to c; over: the read
// is over after c (its end, or an error in c.err). When the log cannot say
// (a slow or unreachable server) it changes nothing and the read waits on.
func (r *reader) pastStall(ctx context.Context, c *readChunk) (over bool) {
	defer r.watch.rearm()
	if r.pend == 0 {
		return false // nothing more is counted: not stopped short
	}
	st, err := r.s.State(ctx)
	if err != nil {
		return false
	}
	if r.next > st.LastSeq {
		// past the log's end, yet the consumer counts more: it counts a
		// message it cannot deliver, one a read of every subject named as
		// a hole (hole)
		return true
	}
	from := max(r.next, st.FirstSeq)
	toSeq := r.f.ToSeq
	if toSeq > 0 && from > toSeq {
		return true
	}
	m, err := r.nextMsg(ctx, from)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound) && r.all:
		// the log counts it but has not got it
		c.msgs = append(c.msgs, readMsg{seq: from, fail: &events.UnreadableError{Seq: from, Last: from, Err: err}})
		r.next = from + 1
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// none of the read's subjects can be had from here on, though the
		// consumer counts some: they are lost before here
		c.msgs = append(c.msgs, readMsg{seq: from, fail: &events.UnreadableError{Seq: from, Missing: r.pend}})
		return true
	case err != nil:
		return false // slow or unreachable: wait on
	case toSeq > 0 && m.Sequence > toSeq:
		return true
	default: // the log gives it: the consumer is stuck before it
		c.msgs = append(c.msgs, readMsg{subject: m.Subject, seq: m.Sequence, at: m.Time, data: m.Data})
		r.next = m.Sequence + 1
	}
	if (toSeq > 0 && r.next > toSeq) || r.next > st.LastSeq {
		return true
	}
	r.src.close()
	f := r.f
	f.FromSeq = r.next
	src, err := r.s.openRead(ctx, f)
	if err != nil {
		c.err = err
		return true
	}
	r.src, r.pend = src, src.pend
	return src.empty
}

// nextMsg gets the first message of the read's subjects at or after seq
// directly from the stream.
func (r *reader) nextMsg(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	if r.all {
		return r.s.stream.GetMsg(ctx, seq)
	}
	var first *jetstream.RawStreamMsg
	for _, subj := range r.f.Subjects() {
		m, err := r.s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if first == nil || m.Sequence < first.Sequence {
			first = m
		}
	}
	if first == nil {
		return nil, jetstream.ErrMsgNotFound
	}
	return first, nil
}

// hole reports the sequences a read of every subject jumped over before
// seq, those the retention limit has not removed, as unreadable.
func (r *reader) hole(ctx context.Context, c *readChunk, seq uint64) {
	from, last := r.next, seq-1
	if r.f.ToSeq > 0 {
		last = min(last, r.f.ToSeq)
	}
	if st, err := r.s.State(ctx); err == nil {
		from = max(from, st.FirstSeq)
	}
	if from > last {
		return
	}
	c.msgs = append(c.msgs, readMsg{seq: from, fail: &events.UnreadableError{Seq: from, Last: last}})
}

// stallWatch ends the context a read waits on (cur, with errStalled) when
// no message has come for ReadStallAfter: it looks every ReadStallAfter
// whether the count of messages and hand-offs (n) has moved, or a hand-off
// is under way (the fetcher then waits for its caller, not the log).
type stallWatch struct {
	n       atomic.Uint64
	handing atomic.Bool
	cur     context.Context // written by the fetcher only (rearm)
	mu      sync.Mutex
	parent  context.Context
	cancel  context.CancelCauseFunc
	seen    uint64
	fresh   bool // rearmed since the last look: the next look only notes n
	stopped bool
	t       *time.Timer
}

func newStallWatch(parent context.Context) *stallWatch {
	w := &stallWatch{parent: parent}
	w.cur, w.cancel = context.WithCancelCause(parent)
	w.t = time.AfterFunc(ReadStallAfter, w.look)
	return w
}

func (w *stallWatch) look() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	n := w.n.Load()
	if n == w.seen && !w.fresh && !w.handing.Load() {
		w.cancel(errStalled)
	}
	w.seen, w.fresh = n, false
	w.t.Reset(ReadStallAfter)
}

// rearm gives the fetcher a new context to wait on after a stall.
func (w *stallWatch) rearm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancel(context.Canceled)
	w.cur, w.cancel = context.WithCancelCause(w.parent)
	w.fresh = true
}

func (w *stallWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
	w.cancel(context.Canceled)
}
