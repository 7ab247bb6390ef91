package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
)

// The outbox holds every event the agent produced and the log has not
// acknowledged yet, keyed by a sequence that only grows, in wire form: the
// subject, the id and the exact JSON bytes, checked once when the event was
// produced (emit), so that draining publishes bytes without decoding them.
// The drainer publishes it in key order in atomic batches of at most
// maxPublish and deletes a batch only after the stream acknowledged
// it; it reads the next batch from the store while the current one is in
// flight. A crash between the ack and the delete publishes the batch again;
// the stream drops the copies by Nats-Msg-Id (the event id), so each event
// is stored once.

// outboxFormat marks an outbox value in wire form. Values written by older
// agents are the event's JSON (they start with '{').
const outboxFormat = 1

// encodeOutbox is the outbox value of an event in wire form.
func encodeOutbox(e events.Encoded) []byte {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen32+len(e.Subject)+len(e.ID)+len(e.Data))
	b = append(b, outboxFormat)
	b = binary.AppendUvarint(b, uint64(len(e.Subject)))
	b = append(b, e.Subject...)
	b = binary.AppendUvarint(b, uint64(len(e.ID)))
	b = append(b, e.ID...)
	return append(b, e.Data...)
}

// decodeOutbox reads an outbox value; v is copied (iterator memory is reused).
func decodeOutbox(v []byte) (events.Encoded, error) {
	if len(v) > 0 && v[0] == '{' {
		var e events.Event // written by an older agent
		if err := json.Unmarshal(v, &e); err != nil {
			return events.Encoded{}, err
		}
		return events.EncodedOf(e)
	}
	if len(v) == 0 || v[0] != outboxFormat {
		return events.Encoded{}, errors.New("unknown outbox value format")
	}
	rest := v[1:]
	field := func() (string, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return "", false
		}
		s := string(rest[k : k+int(n)])
		rest = rest[k+int(n):]
		return s, true
	}
	subj, ok1 := field()
	id, ok2 := field()
	if !ok1 || !ok2 {
		return events.Encoded{}, errors.New("truncated outbox value")
	}
	return events.Encoded{Subject: subj, ID: id, Data: append([]byte(nil), rest...)}, nil
}

// outboxBatch is a run of outbox events and the keys they occupy.
type outboxBatch struct {
	evs         []events.Encoded
	seqs        []uint64 // each event's outbox sequence
	first, last []byte
	upTo        uint64 // last sequence in the batch
}

// peekOutbox returns up to max events of the outbox after sequence after,
// up to sequence upTo.
func (a *Agent) peekOutbox(max int, after, upTo uint64) (outboxBatch, error) {
	var ob outboxBatch
	if upTo <= after {
		return ob, nil
	}
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: outboxKey(after + 1), UpperBound: outboxKey(upTo + 1)})
	if err != nil {
		return ob, err
	}
	defer it.Close()
	for it.First(); it.Valid() && len(ob.evs) < max; it.Next() {
		e, err := decodeOutbox(it.Value())
		if err != nil {
			return ob, fmt.Errorf("outbox key %x: %w", it.Key(), err)
		}
		if ob.first == nil {
			ob.first = append([]byte{}, it.Key()...)
		}
		ob.last = append(ob.last[:0], it.Key()...)
		ob.evs = append(ob.evs, e)
		ob.seqs = append(ob.seqs, binary.BigEndian.Uint64(it.Key()[len(prefixOutbox):]))
	}
	if len(ob.evs) > 0 {
		ob.upTo = binary.BigEndian.Uint64(ob.last[len(prefixOutbox):])
	}
	return ob, it.Error()
}

// OutboxLen returns how many events wait for the log's acknowledgement.
func (a *Agent) OutboxLen() int { return int(a.outboxLen.Load()) }

// Parked returns how many events the log refused for good (not for being
// unreachable): they are kept in the agent's store under parked/, out of
// the outbox, so that the events after them still reach the log.
func (a *Agent) Parked() int { return int(a.parked.Load()) }

// ParkedEvent is an event the log refused, as kept in the agent's store.
type ParkedEvent struct {
	Seq     uint64          `json:"seq"` // its outbox sequence
	Subject string          `json:"subject"`
	ID      string          `json:"id"`
	Error   string          `json:"error"` // the log's answer
	Event   json.RawMessage `json:"event"` // its JSON, as it was produced
}

// parkedValue is a parked event's store value: the error, then the outbox
// value as it was.
type parkedValue struct {
	Error  string `json:"error"`
	Outbox []byte `json:"outbox"`
}

// ParkedEvents lists the parked events, oldest first.
func (a *Agent) ParkedEvents() ([]ParkedEvent, error) {
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: prefixParked, UpperBound: prefixEnd(prefixParked)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []ParkedEvent
	for it.First(); it.Valid(); it.Next() {
		var pv parkedValue
		if err := json.Unmarshal(it.Value(), &pv); err != nil {
			return nil, fmt.Errorf("agent store key %x: %w", it.Key(), err)
		}
		e, err := decodeOutbox(pv.Outbox)
		if err != nil {
			return nil, fmt.Errorf("agent store key %x: %w", it.Key(), err)
		}
		out = append(out, ParkedEvent{Seq: binary.BigEndian.Uint64(it.Key()[len(prefixParked):]),
			Subject: e.Subject, ID: e.ID, Error: pv.Error, Event: e.Data})
	}
	return out, it.Error()
}

// credentialsRefused is the warning when the server refuses the device's
// credentials (true for a rate-guard suspension and for a revocation).
const credentialsRefused = "outbox: the server refused this device's credentials: suspended by the rate guard or revoked by an operator; see 'fleet device list' on the server"

// credentialsError reports whether err is the server refusing the device's
// credentials.
func credentialsError(err error) bool {
	return errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAuthorization)
}

// sayRefused logs the credentials-refused warning once per outage, whoever
// notices it first: the outbox drain when a publish fails, or the connection
// watcher while reconnects are refused (a publish may be waiting out the
// outage in its retries and say nothing).
func (a *Agent) sayRefused(err error) {
	if a.refusedSaid.Swap(true) {
		return
	}
	// fleet server's rate guard suspends a device by revoking its credentials
	// for a while, and an operator's revocation looks the same from here: the
	// agent cannot tell them apart, so the text names both
	a.log.Warn(credentialsRefused+": backing off, keeping events locally; they are sent if the server lets this device back in",
		"events", a.OutboxLen(), "err", err)
}

// drain runs until ctx is done, publishing the outbox whenever it has events
// and the log can be reached; it retries with backoff while it cannot.
func (a *Agent) drain(ctx context.Context, conn *logConn) {
	delay := 50 * time.Millisecond
	// said is the warning last logged for this outage: the cause is logged
	// again when it changes (a connection lost first, then its credentials
	// refused on reconnect, must end with the refusal in the log)
	said := ""
	for {
		err := a.drainAll(ctx, conn)
		var wait <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if le := conn.nc.LastError(); credentialsError(le) {
				a.sayRefused(le)
				said = credentialsRefused
			} else if said == "" {
				a.log.Warn("outbox: log not reachable, keeping events locally", "events", a.OutboxLen(), "err", err)
				said = "unreachable"
			}
			// jittered (0.5 to 1.5 times the delay): the devices of a site
			// that lost the log together do not come back in step
			wait = time.After(delay/2 + rand.N(delay))
			delay = min(delay*2, 2*time.Second)
		} else {
			if said != "" {
				a.log.Info("outbox: log reachable again, drained")
			}
			said, delay = "", 50*time.Millisecond
			a.refusedSaid.Store(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.drainWake:
			if wait == nil && !a.gather(ctx) { // events after an idle spell
				return
			}
		case <-wait:
		}
	}
}

// How the drain gathers the events of one pass into one batch: woken with
// an empty outbox behind it, it waits until no commit came for
// gatherQuiet and no reconciler call is running, at most gatherMax. A
// manifest's pass commits the resources' Reconciling, then (a reconcile
// later) their Ready; sent as they came, that was two atomic batches a
// device, and at 10,000 devices the stream's ingest of small batches is
// what bounds a rollout (each batch on a file-backed stream is staged in a
// store of its own, BENCHMARKS.md). A single event waits gatherQuiet; none
// waits more than gatherMax (a container's pull that takes minutes sends
// its Reconciling first).
var (
	gatherQuiet = 15 * time.Millisecond
	gatherMax   = 200 * time.Millisecond
)

// gather waits while commits keep coming, as above; false if ctx ended.
func (a *Agent) gather(ctx context.Context) bool {
	if gatherMax <= 0 {
		return true
	}
	limit := time.NewTimer(gatherMax)
	defer limit.Stop()
	quiet := time.NewTimer(gatherQuiet)
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-limit.C:
			return true
		case <-quiet.C:
			if a.working.Load() == 0 {
				return true
			}
			quiet.Reset(gatherQuiet) // a pass still running: its results come next
		case <-a.drainWake:
			quiet.Reset(gatherQuiet)
		}
	}
}

// drainAll publishes until the outbox is empty: the store is fsynced
// (nothing is published before it is on disk), then batches go out in
// order, one at a time; while one is in flight the next is read from the
// store, and the acknowledged one is deleted.
func (a *Agent) drainAll(ctx context.Context, conn *logConn) error {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	durable, err := a.syncLocal() // also offline: bound what a power loss can take
	if err != nil {
		return err
	}
	if a.OutboxLen() == 0 {
		return nil
	}
	st := conn.log
	next, err := a.peekOutbox(maxPublish, 0, durable)
	for err == nil && len(next.evs) > 0 {
		cur := next
		sent := make(chan error, 1)
		go func() {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			sent <- st.AppendEncoded(pctx, cur.evs)
		}()
		if cur.upTo >= durable {
			durable, err = a.syncLocal() // what the loop committed meanwhile
		}
		if err == nil {
			next, err = a.peekOutbox(maxPublish, cur.upTo, durable)
		}
		parked := 0
		if perr := <-sent; perr != nil {
			if ctx.Err() != nil || !answered(perr) {
				if errors.Is(perr, events.ErrInvalid) {
					a.log.Error("outbox: event refused by the log", "err", perr)
				}
				return perr
			}
			// The log answered and refused the batch: publish it one event
			// at a time, in order, and park the events it will never take.
			if parked, perr = a.publishOrPark(ctx, st, cur); perr != nil {
				return perr
			}
		}
		if f := a.o.onPublished; f != nil {
			f(len(cur.evs) - parked)
		}
		// Losing this delete in a crash only republishes the batch, which the
		// stream drops as duplicates: no sync needed.
		if derr := a.db.DeleteRange(cur.first, append(cur.last, 0), pebble.NoSync); derr != nil {
			return fmt.Errorf("outbox delete: %w", derr)
		}
		a.outboxLen.Add(-int64(len(cur.evs) - parked)) // the parked ones left it already
		a.published.Add(int64(len(cur.evs) - parked))
		a.markMu.Lock()
		a.acked = cur.upTo
		a.markMu.Unlock()
		a.writeMark()
	}
	return err
}

// publishOrPark appends the events of a batch the log refused one at a
// time, in order. An event the log refuses (it answered, with an error: too
// large for the stream, a subject it does not take) is parked: moved out of
// the outbox into parked/ with the log's answer, and logged, so that one bad
// event cannot hold back every event after it. An unreachable log stops
// the walk; the batch stays in the outbox (what was appended is dropped as
// a duplicate when it is sent again).
func (a *Agent) publishOrPark(ctx context.Context, st appender, cur outboxBatch) (parked int, err error) {
	for i, e := range cur.evs {
		err := st.AppendEncoded(ctx, cur.evs[i:i+1])
		if err == nil {
			continue
		}
		if ctx.Err() != nil || !tooLarge(err) {
			return parked, err
		}
		seq := cur.seqs[i]
		raw, closer, gerr := a.db.Get(outboxKey(seq)) // read again: only parking needs it
		if gerr != nil {
			return parked, fmt.Errorf("outbox park: %w", gerr)
		}
		v, merr := json.Marshal(parkedValue{Error: err.Error(), Outbox: raw})
		closer.Close()
		if merr != nil {
			return parked, merr
		}
		b := a.db.NewBatch()
		_ = b.Set(parkedKey(seq), v, nil)
		_ = b.Delete(outboxKey(seq), nil)
		if cerr := b.Commit(pebble.Sync); cerr != nil {
			b.Close()
			return parked, fmt.Errorf("outbox park: %w", cerr)
		}
		b.Close()
		parked++
		a.outboxLen.Add(-1)
		a.parked.Add(1)
		a.log.Error("outbox: the log refused an event; it is parked in the agent's store and the events after it go on",
			"id", e.ID, "subject", e.Subject, "err", err, "parked", a.Parked())
	}
	return parked, nil
}

// answered reports whether err is the log's answer refusing a message (a
// bad request), or one larger than the connection carries: the batch is
// then sent one event at a time to find which. Anything else (unreachable,
// no stream, no leader, a timeout) is retried as it is.
func answered(err error) bool { return errors.Is(err, events.ErrRefused) }

// tooLarge reports whether err says the log will never take this message
// as it is: larger than the stream's maximum message or header size, or
// than the connection carries. Only such events are parked; any other
// refusal (a sealed stream, say) leaves them in the outbox, retried.
func tooLarge(err error) bool { return errors.Is(err, events.ErrTooLarge) }

// maxPublish is the most events the drainer sends in one atomic batch (the
// server's limit on an atomic batch, jsstore.MaxBatch).
const maxPublish = 1000
