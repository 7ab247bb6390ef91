package jsstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// Reading the log: Read (a range, then the end) and Follow (from a
// sequence on, then live) are one pipeline. An ordered consumer reads
// without acks at close to the stream's raw speed; messages are decoded on
// several goroutines (one a CPU) in chunks and yielded in stream order on
// the caller's goroutine; stopping early (yield returns false) stops them
// all. Every read deletes its consumer when its iteration ends, whichever
// way it ends (dropConsumer), so that a reader polling the log does not
// pile up consumers until the stream's limit.

// Read implements events.Store.Read.
func (s *Store) Read(ctx context.Context, f events.Filter) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) { s.read(ctx, f, false, yield) }
}

// Follow implements events.Store.Follow: Read's pipeline without an end.
// While it is live, each chunk of messages is handed on as soon as the
// stream has nothing more pending, so an event reaches the caller within
// the consumer's delivery time. If the connection fails the ordered
// consumer recreates itself from the last sequence delivered; an error the
// consumer cannot recover from ends the sequence, wrapping
// events.ErrUnavailable when it is a connection failure.
func (s *Store) Follow(ctx context.Context, f events.Filter) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) { s.read(ctx, f, true, yield) }
}

func (s *Store) read(ctx context.Context, f events.Filter, follow bool, yield func(events.Stored, error) bool) {
	what := "read log"
	if follow {
		what = "follow log"
		f.ToSeq = 0
	}
	if err := checkFilter(f); err != nil {
		yield(events.Stored{}, err)
		return
	}
	src, err := s.openRead(ctx, f)
	if err != nil {
		if follow && ctx.Err() != nil {
			return
		}
		yield(events.Stored{}, fmt.Errorf("%s: %w", what, err))
		return
	}
	if !follow && src.empty {
		src.close()
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	ordered := make(chan *readChunk, 4*decoders()) // in stream order, to the caller
	work := make(chan *readChunk, cap(ordered))    // to the decoders
	fetched := make(chan struct{})
	defer func() {
		cancel()
		<-fetched // the fetcher has stopped and deleted its consumer
	}()
	for range decoders() {
		go func() {
			for {
				select {
				case c := <-work:
					for i := range c.msgs {
						m := &c.msgs[i]
						if m.fail != nil {
							m.err = m.fail
							continue
						}
						m.st, m.err = FromRaw(m.subject, m.seq, m.at, m.data)
					}
					close(c.decoded)
				case <-rctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(fetched)
		defer close(ordered)
		r := newReader(s, f, follow, what, src)
		defer r.close()
		if !follow {
			r.watch = newStallWatch(rctx)
		}
		for {
			c := r.chunk(rctx)
			r.handing(true) // a slow caller is not a stalled read
			select {
			case work <- c:
			case <-rctx.Done():
				return
			}
			select {
			case ordered <- c:
			case <-rctx.Done():
				return
			}
			r.handing(false)
			if c.last {
				return
			}
		}
	}()
	for c := range ordered {
		select {
		case <-c.decoded:
		case <-rctx.Done():
			if !follow {
				yield(events.Stored{}, fmt.Errorf("%s: %w", what, unavailable(context.Cause(ctx))))
			}
			return
		}
		for _, m := range c.msgs {
			if m.err != nil {
				if !yield(events.Stored{}, m.err) {
					return
				}
			} else if f.Match(m.st) && !yield(m.st, nil) {
				return
			}
		}
		if c.err != nil {
			if !follow || ctx.Err() == nil {
				yield(events.Stored{}, c.err)
			}
			return
		}
		if c.last {
			return
		}
	}
	// ctx ended the read before its end; a follow has no end but ctx's
	if !follow {
		yield(events.Stored{}, fmt.Errorf("%s: %w", what, unavailable(context.Cause(ctx))))
	}
}

// readSource is the ordered consumer a read takes messages from.
type readSource struct {
	s      *Store
	cons   jetstream.Consumer
	it     jetstream.MessagesContext
	empty  bool   // nothing was pending when it was made
	pend   uint64 // how many were pending then
	closed bool
}

// openRead makes the ordered consumer that reads f from f.FromSeq.
func (s *Store) openRead(ctx context.Context, f events.Filter) (*readSource, error) {
	cons, err := s.orderedConsumer(ctx, f)
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2048))
	if err != nil {
		s.dropConsumer(cons)
		return nil, unavailable(err)
	}
	src := &readSource{s: s, cons: cons, it: it, pend: 1}
	if info := cons.CachedInfo(); info != nil {
		src.empty, src.pend = info.NumPending == 0, info.NumPending
	}
	return src, nil
}

// close stops the source's consumer and deletes it.
func (r *readSource) close() {
	if r.closed {
		return
	}
	r.closed = true
	r.it.Stop()
	r.s.dropConsumer(r.cons)
}

// dropConsumer deletes an ordered consumer's server consumer (the one it
// reads from now; those it replaced on a reset it deleted itself) once its
// read is over. If the server cannot be reached, the consumer's inactivity
// threshold removes it later.
func (s *Store) dropConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.js.DeleteConsumer(ctx, events.Stream, info.Name)
}

// orderedConsumer makes an ordered consumer reading f. Its name is chosen
// here, so that one the server made for a request that failed on the
// client's side (ctx ended while it was on its way) is deleted too.
func (s *Store) orderedConsumer(ctx context.Context, f events.Filter) (jetstream.Consumer, error) {
	return createConsumer(ctx, func(actx context.Context) (jetstream.Consumer, error) {
		cfg := orderedConfig(f)
		cfg.NamePrefix = fmt.Sprintf("fleet_read_%016x", rand.Uint64())
		cons, err := s.js.OrderedConsumer(actx, events.Stream, cfg)
		if err != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.js.DeleteConsumer(dctx, events.Stream, cfg.NamePrefix+"_1") // the first of its names
			return nil, unavailable(err)
		}
		return cons, nil
	})
}

// ConsumerCreateTimeout is how long one request to create a consumer may
// wait for its answer before it is made again. On a cluster the answer
// comes from the node the consumer was placed on, and one that has just
// restarted can leave a request unanswered for good (seen in
// TestClusterAuthDevicesConverge: one create in about six after the stream
// leader's restart, never answered in 60 s) while a second request is
// answered in milliseconds.
var ConsumerCreateTimeout = 5 * time.Second

// createConsumer runs create, each try bounded by ConsumerCreateTimeout,
// until it succeeds, fails for a reason other than an answer that did not
// come (a timeout, no responders), or ctx ends. Each try must be
// idempotent or clean up after itself.
func createConsumer(ctx context.Context, create func(context.Context) (jetstream.Consumer, error)) (jetstream.Consumer, error) {
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		actx, cancel := context.WithTimeout(ctx, ConsumerCreateTimeout)
		cons, err := create(actx)
		cancel()
		if err == nil || ctx.Err() != nil || !unanswered(err) {
			return cons, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// unanswered reports whether err is a request that got no answer: a
// timeout or no responders (an election under way), worth making again.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)
}

// orderedConfig is the ordered consumer that reads f's subjects from f.FromSeq.
func orderedConfig(f events.Filter) jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: f.Subjects(), DeliverPolicy: jetstream.DeliverAllPolicy}
	if f.FromSeq > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = f.FromSeq
	}
	return cfg
}

// readChunkSize is how many messages Read hands a decoder at once.
const readChunkSize = 256

// readChunk is a run of messages read, decoded on one of Read's decoders.
type readChunk struct {
	msgs    []readMsg
	err     error         // the read failed after msgs
	last    bool          // the read is over after msgs (its end, or err)
	decoded chan struct{} // closed once msgs are decoded
}

type readMsg struct {
	subject string
	seq     uint64
	at      time.Time
	data    []byte
	fail    error // the read could not get this message (readstall.go)
	st      events.Stored
	err     error
}

// chunk reads up to readChunkSize messages. A read's chunk is the last when
// the read is over (the stream's end or toSeq reached, or an error); a
// follow's chunk ends early when nothing more is pending (so that live
// events are handed on at once) and is the last only on an error. A read
// that has stopped short of its end gets past the message it stopped at
// (readstall.go).
func (r *reader) chunk(ctx context.Context) *readChunk {
	c := &readChunk{msgs: make([]readMsg, 0, readChunkSize), decoded: make(chan struct{}), last: true}
	toSeq := r.f.ToSeq
	for len(c.msgs) < readChunkSize {
		wctx := ctx
		if r.watch != nil {
			wctx = r.watch.cur
		}
		m, err := r.src.it.Next(jetstream.NextContext(wctx))
		if err != nil {
			if r.watch != nil && ctx.Err() == nil && errors.Is(context.Cause(wctx), errStalled) {
				if r.pastStall(ctx, c) {
					return c
				}
				continue
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && ctx.Err() != nil {
				err = context.Cause(ctx)
			}
			c.err = fmt.Errorf("%s: %w", r.what, unavailable(err))
			return c
		}
		md, err := m.Metadata()
		if err != nil {
			c.err = fmt.Errorf("%s: %w", r.what, err)
			return c
		}
		seq := md.Sequence.Stream
		if r.watch != nil {
			r.watch.n.Add(1)
			if r.all && seq > r.next {
				r.hole(ctx, c, seq)
			}
		}
		r.next, r.pend = seq+1, md.NumPending
		if toSeq > 0 && seq > toSeq {
			return c
		}
		c.msgs = append(c.msgs, readMsg{subject: m.Subject(), seq: seq, at: md.Timestamp, data: m.Data()})
		if md.NumPending == 0 {
			c.last = !r.follow
			return c
		}
		if toSeq > 0 && seq >= toSeq {
			return c
		}
	}
	c.last = false
	return c
}

// decoders is how many goroutines decode messages for one Read: one a CPU.
func decoders() int { return max(1, runtime.GOMAXPROCS(0)) }
