package projections

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// item is one delivered message: its raw form until a decoder has decoded it.
type item struct {
	seq     uint64
	pending uint64
	ev      events.Stored
	err     error

	subject string    // raw message, cleared once decoded
	at      time.Time // stream time
	data    []byte
	other   bool // another partition's (WithPartition): not decoded, not folded
}

// decode decodes the item's raw message and lets go of it.
func (it *item) decode() {
	if it.other {
		return
	}
	it.ev, it.err = jsstore.FromRawOwned(it.subject, it.seq, it.at, it.data) // the message's buffer is the event's now
	it.subject, it.data = "", nil
}

// chunk is a slice of delivered messages on its way to the fold: decoded on
// one of the decoder goroutines, folded in delivery order.
type chunk struct {
	items   []item
	decoded chan struct{} // closed once items are decoded
}

// consume runs one durable consumer from checkpoint+1. The consumer acks
// nothing: the checkpoint in Pebble is the source of truth, so the consumer
// is recreated at the checkpoint on every start.
func (s *Service) consume(ctx context.Context, js jetstream.JetStream) error {
	s.applyMu.Lock()
	from := s.m.applied + 1
	s.applyMu.Unlock()
	if err := js.DeleteConsumer(ctx, events.Stream, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("reset consumer %s: %w", s.durable, err)
	}
	cons, err := js.CreateConsumer(ctx, events.Stream, jetstream.ConsumerConfig{
		Durable: s.durable, Description: "fleet projection service (checkpoint kept in its Pebble store)",
		AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		FilterSubject: events.AllSubjects, MaxAckPending: -1,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", s.durable, err)
	}
	return s.pump(ctx, cons, 0, func(parts [][]item) error {
		start := time.Now()
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		info := s.applyParts(s.m, parts, true)
		if err := s.flush(s.m, s.syncEvery <= 0, true, &info); err != nil {
			return err
		}
		if s.syncEvery > 0 {
			s.unsynced.Store(true)
		}
		info.Fold = time.Since(start)
		s.done(info)
		return nil
	})
}

// handoff is how many decoded messages the consumer's callback hands the
// folding goroutine at once; it hands fewer when the stream has nothing
// more pending or the first of them has waited handoffWait.
const (
	handoff     = 256
	handoffWait = time.Millisecond
)

// pump delivers messages from cons to apply in batches: whatever has arrived
// when the previous batch is written, up to maxBatch. The consumer's
// callback hands messages over in chunks (see handoff: a lone event is not
// held back); decoders (one a CPU) decode the chunks side by side, and the
// fold takes them in delivery order while the previous batch is folded and
// written: a three-stage pipeline. It stops at ctx's end, on an error, or
// after sequence upTo (0: never).
func (s *Service) pump(ctx context.Context, cons jetstream.Consumer, upTo uint64, apply func([][]item) error) error {
	ch := make(chan *chunk, 2*s.maxBatch/handoff+2) // in delivery order, to the fold
	work := make(chan *chunk, cap(ch))              // to the decoders
	free := make(chan []item, cap(ch)+2)
	quit := make(chan struct{})
	defer close(quit)
	for range decoders() {
		go func() {
			for {
				select {
				case c := <-work:
					for i := range c.items {
						c.items[i].decode()
					}
					close(c.decoded)
				case <-quit:
					return
				}
			}
		}()
	}
	errc := make(chan error, 1)
	var pend []item // the callback's alone
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
				pend = make([]item, 0, handoff)
			}
			since = now
		}
		if s.others(m.Subject()) {
			pend = append(pend, item{seq: seq, pending: pending, other: true})
		} else {
			pend = append(pend, item{seq: seq, pending: pending, subject: m.Subject(), at: at, data: m.Data()})
		}
		if len(pend) >= handoff || pending == 0 || now.Sub(since) >= handoffWait || (upTo > 0 && seq >= upTo) {
			c := &chunk{items: pend, decoded: make(chan struct{})}
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
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			select {
			case errc <- err:
			default:
			}
		}
	}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	// A batch is the chunks' items as they are (not copied); the chunks go
	// back to the callback once applied. Their items are overwritten as it
	// fills them again, so what a chunk in the free list still holds is
	// bounded by the list's length.
	var batch [][]item
	n := 0 // items in batch
	take := func(c *chunk) bool {
		select {
		case <-c.decoded:
		case <-ctx.Done():
			return false
		}
		batch = append(batch, c.items)
		n += len(c.items)
		return true
	}
	release := func() {
		for _, items := range batch {
			select {
			case free <- items[:0]:
			default:
			}
		}
		clear(batch)
		batch, n = batch[:0], 0
	}
	for {
		release()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case c := <-ch:
			if !take(c) {
				return ctx.Err()
			}
		}
	drain:
		for n < s.maxBatch {
			select {
			case c := <-ch:
				if !take(c) {
					return ctx.Err()
				}
			default:
				break drain
			}
		}
		lastPart := batch[len(batch)-1]
		last := lastPart[len(lastPart)-1]
		s.noteLast(last.seq + last.pending)
		if upTo > 0 {
			for i, items := range batch {
				batch[i] = slices.DeleteFunc(items, func(it item) bool { return it.seq > upTo })
			}
		}
		if err := apply(batch); err != nil {
			return err
		}
		if upTo > 0 && last.seq >= upTo {
			return nil
		}
	}
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

// decoders is how many goroutines decode delivered messages: one a CPU.
func decoders() int { return max(1, runtime.GOMAXPROCS(0)) }
