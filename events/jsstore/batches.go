package jsstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// Batches: the read side's pipeline (the projection service, its rebuild,
// the time-travel index). A consumer delivers messages to a callback that
// reads each one's sequence, pending count and stream time from its reply
// subject (ackMetadata) and hands them over in chunks; decoders (one a CPU)
// decode the chunks side by side, and the caller takes them in delivery
// order, as many as have arrived, while it folds and writes the previous
// batch: a three-stage pipeline.

// DefaultBatchMax is the most messages a batch holds when BatchOptions.Max is 0.
const DefaultBatchMax = 5000

// handoff is how many messages the consumer's callback hands the decoders
// at once; it hands fewer when the stream has nothing more pending or the
// first of them has waited handoffWait (a lone event is not held back).
const (
	handoff     = 256
	handoffWait = time.Millisecond
)

// batchChunk is a run of delivered messages on its way to the caller.
type batchChunk struct {
	raw     []rawMsg
	out     []events.Delivery // raw decoded (and filtered), once decoded is closed
	pending uint64            // of the chunk's last message
	decoded chan struct{}
}

type rawMsg struct {
	subject string
	seq     uint64
	at      time.Time
	data    []byte
}

// Batches implements events.Store.Batches.
func (s *Store) Batches(ctx context.Context, f events.Filter, o events.BatchOptions) iter.Seq2[events.Batch, error] {
	return func(yield func(events.Batch, error) bool) { s.batches(ctx, f, o, yield) }
}

// State implements events.Store.State.
func (s *Store) State(ctx context.Context) (events.LogState, error) {
	str, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return events.LogState{}, fmt.Errorf("log state: %w", unavailable(err))
	}
	st := str.CachedInfo().State
	return events.LogState{FirstSeq: st.FirstSeq, FirstTime: st.FirstTime, LastSeq: st.LastSeq, Msgs: st.Msgs}, nil
}

func (s *Store) batches(ctx context.Context, f events.Filter, o events.BatchOptions, yield func(events.Batch, error) bool) {
	what := "read log"
	if o.Follow {
		what = "follow log"
		f.ToSeq = 0
	}
	fail := func(err error) { yield(events.Batch{}, fmt.Errorf("%s: %w", what, err)) }
	if err := checkFilter(f); err != nil {
		yield(events.Batch{}, err)
		return
	}
	maxBatch := o.Max
	if maxBatch <= 0 {
		maxBatch = DefaultBatchMax
	}
	cons, err := s.batchConsumer(ctx, f, o)
	if err != nil {
		if o.Follow && ctx.Err() != nil {
			return
		}
		fail(err)
		return
	}
	if o.Name == "" {
		defer s.dropConsumer(cons) // after cc.Stop and the decoders, below
	}
	upTo := f.ToSeq
	if !o.Follow {
		info := cons.CachedInfo()
		if info != nil && info.NumPending == 0 {
			return // nothing to read
		}
		if upTo == 0 {
			last, err := s.LastSeq(ctx)
			if err != nil {
				fail(err)
				return
			}
			upTo = last
		}
	}
	ch := make(chan *batchChunk, 2*maxBatch/handoff+2) // in delivery order, to the caller
	work := make(chan *batchChunk, cap(ch))            // to the decoders
	free := make(chan *batchChunk, cap(ch)+2)
	quit := make(chan struct{})
	defer close(quit)
	for range decoders() {
		go func() {
			for {
				select {
				case c := <-work:
					c.decode(f, o.Skip)
				case <-quit:
					return
				}
			}
		}()
	}
	errc := make(chan error, 1)
	var pend *batchChunk // the callback's alone
	var since time.Time
	cc, err := cons.Consume(func(m jetstream.Msg) {
		seq, pending, at, ok := ackMetadata(m.Reply())
		if !ok {
			md, err := m.Metadata()
			if err != nil {
				return
			}
			seq, pending, at = md.Sequence.Stream, md.NumPending, md.Timestamp
		}
		now := time.Now()
		if pend == nil {
			select {
			case pend = <-free:
			default:
				pend = &batchChunk{raw: make([]rawMsg, 0, handoff)}
			}
			pend.decoded = make(chan struct{})
			since = now
		}
		pend.raw = append(pend.raw, rawMsg{subject: m.Subject(), seq: seq, at: at, data: m.Data()})
		pend.pending = pending
		if len(pend.raw) >= handoff || pending == 0 || now.Sub(since) >= handoffWait || (upTo > 0 && seq >= upTo) {
			c := pend
			pend = nil
			select {
			case work <- c:
			case <-ctx.Done():
				return
			case <-quit:
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
			case <-quit:
			}
		}
	}, jetstream.PullMaxMessages(4096), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
			errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, nats.ErrConnectionClosed) {
			select {
			case errc <- err:
			default:
			}
		}
	}))
	if err != nil {
		fail(unavailable(err))
		return
	}
	defer cc.Stop()
	var taken []*batchChunk
	var runs [][]events.Delivery
	n := 0 // deliveries in runs
	take := func(c *batchChunk) bool {
		select {
		case <-c.decoded:
		case <-ctx.Done():
			return false
		}
		taken = append(taken, c)
		runs = append(runs, c.out)
		n += len(c.raw)
		return true
	}
	ended := func() {
		if !o.Follow {
			fail(unavailable(context.Cause(ctx)))
		}
	}
	for {
		for _, c := range taken { // the caller is done with them
			c.raw, c.out = c.raw[:0], c.out[:0]
			select {
			case free <- c:
			default:
			}
		}
		clear(taken)
		clear(runs)
		taken, runs, n = taken[:0], runs[:0], 0
		select {
		case <-ctx.Done():
			ended()
			return
		case err := <-errc:
			fail(unavailable(err))
			return
		case c := <-ch:
			if !take(c) {
				ended()
				return
			}
		}
	drain:
		for n < maxBatch {
			select {
			case c := <-ch:
				if !take(c) {
					ended()
					return
				}
			default:
				break drain
			}
		}
		last := taken[len(taken)-1]
		lastSeq := last.raw[len(last.raw)-1].seq
		if upTo > 0 && lastSeq > upTo {
			for i, r := range runs {
				runs[i] = slices.DeleteFunc(r, func(d events.Delivery) bool { return d.Seq > upTo })
			}
		}
		if !yield(events.Batch{Runs: runs, Pending: last.pending}, nil) {
			return
		}
		if !o.Follow && (lastSeq >= upTo || last.pending == 0) {
			return
		}
	}
}

// decode decodes the chunk's messages into its deliveries (those f
// matches, and every bad message) and lets go of the raw ones.
func (c *batchChunk) decode(f events.Filter, skip func(string) bool) {
	if cap(c.out) < len(c.raw) {
		c.out = make([]events.Delivery, 0, max(len(c.raw), handoff))
	}
	for i := range c.raw {
		m := &c.raw[i]
		if skip != nil && skip(m.subject) {
			c.out = append(c.out, events.Delivery{Seq: m.seq, Skipped: true})
			m.subject, m.data = "", nil
			continue
		}
		st, err := FromRawOwned(m.subject, m.seq, m.at, m.data) // the message's buffer is the event's now
		if err != nil || f.Match(st) {
			c.out = append(c.out, events.Delivery{Seq: m.seq, Stored: st, Err: err})
		}
		m.subject, m.data = "", nil
	}
	close(c.decoded)
}

// batchConsumer makes the consumer of one Batches call: an ordered consumer,
// or with o.Name a durable one of that name, deleted and made anew at
// f.FromSeq (it acks nothing: its reader keeps its own checkpoint).
func (s *Store) batchConsumer(ctx context.Context, f events.Filter, o events.BatchOptions) (jetstream.Consumer, error) {
	if o.Name == "" {
		return s.orderedConsumer(ctx, f)
	}
	if err := s.js.DeleteConsumer(ctx, events.Stream, o.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("reset consumer %s: %w", o.Name, unavailable(err))
	}
	cfg := jetstream.ConsumerConfig{
		Durable: o.Name, Description: "fleet reader (its checkpoint is kept by the reader)",
		AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: max(f.FromSeq, 1),
		FilterSubjects: f.Subjects(), MaxAckPending: -1,
	}
	// the same config again is no change, so a try made again is harmless
	cons, err := createConsumer(ctx, func(actx context.Context) (jetstream.Consumer, error) {
		return s.js.CreateConsumer(actx, events.Stream, cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", o.Name, unavailable(err))
	}
	return cons, nil
}

// checkFilter checks a read's filter's ids.
func checkFilter(f events.Filter) error {
	if f.Resource != "" && f.Device == "" {
		return fmt.Errorf("%w: filter: a resource needs a device", events.ErrInvalid)
	}
	for _, id := range []struct{ field, v string }{{"device", f.Device}, {"resource", f.Resource}} {
		if id.v != "" {
			if err := events.CheckID(id.field, id.v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ackMetadata reads a delivered message's stream sequence, pending count
// and stream time from its reply subject, as jetstream.Msg.Metadata does
// but without building the metadata (it runs for every message, on the
// connection's goroutine). ok false: not a form it knows; use Metadata.
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>]
func ackMetadata(reply string) (seq, pending uint64, at time.Time, ok bool) {
	const prefix = "$JS.ACK."
	if len(reply) <= len(prefix) || reply[:len(prefix)] != prefix {
		return 0, 0, time.Time{}, false
	}
	// the tokens after the prefix, by the positions of the dots between them
	var dots [11]int
	n := 0
	for i := len(prefix); i < len(reply); i++ {
		if reply[i] == '.' {
			if n == len(dots) {
				return 0, 0, time.Time{}, false // more tokens than either form has
			}
			dots[n] = i
			n++
		}
	}
	tok := func(i int) string { // i-th token after the prefix; 0 <= i <= n
		from, to := len(prefix), len(reply)
		if i > 0 {
			from = dots[i-1] + 1
		}
		if i < n {
			to = dots[i]
		}
		return reply[from:to]
	}
	first := 0 // of delivered, sseq, cseq, tm, pending
	switch n + 1 {
	case 7: // v1
		first = 2
	case 9, 10: // v2, with or without the last token
		first = 4
	default:
		return 0, 0, time.Time{}, false
	}
	seq, ok1 := number(tok(first + 1))
	ts, ok2 := number(tok(first + 3))
	pending, ok3 := number(tok(first + 4))
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, time.Time{}, false
	}
	return seq, pending, time.Unix(0, int64(ts)), true
}

// number parses a reply subject's decimal token.
func number(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
