package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// The outbox holds every event the agent produced and the log has not
// acknowledged yet, keyed by a sequence that only grows. The drainer
// publishes it in key order in atomic batches of at most jsstore.MaxBatch
// and deletes a batch only after the stream acknowledged it. A crash between
// the ack and the delete publishes the batch again; the stream drops the
// copies by Nats-Msg-Id (the event id), so each event is stored once.

// peekOutbox returns up to max events from the head of the outbox, up to
// sequence upTo, and the key range they occupy.
func (a *Agent) peekOutbox(max int, upTo uint64) ([]events.Event, []byte, []byte, error) {
	it, err := a.db.NewIter(&pebble.IterOptions{LowerBound: prefixOutbox, UpperBound: outboxKey(upTo + 1)})
	if err != nil {
		return nil, nil, nil, err
	}
	defer it.Close()
	var evs []events.Event
	var first, last []byte
	for it.First(); it.Valid() && len(evs) < max; it.Next() {
		var e events.Event // written by emit; jsstore checks it again before publishing
		if err := json.Unmarshal(it.Value(), &e); err != nil {
			return nil, nil, nil, fmt.Errorf("outbox key %x: %w", it.Key(), err)
		}
		if first == nil {
			first = append([]byte{}, it.Key()...)
		}
		last = append(last[:0], it.Key()...)
		evs = append(evs, e)
	}
	return evs, first, last, it.Error()
}

// OutboxLen returns how many events wait for the log's acknowledgement.
func (a *Agent) OutboxLen() int { return int(a.outboxLen.Load()) }

// drainOnce publishes the head of the outbox (one batch) and deletes it after
// the ack. It returns how many events it published.
func (a *Agent) drainOnce(ctx context.Context, st *jsstore.Store) (int, error) {
	a.drainMu.Lock()
	defer a.drainMu.Unlock()
	durable, err := a.syncLocal() // nothing is published before it is on disk
	if err != nil {
		return 0, err
	}
	evs, first, last, err := a.peekOutbox(jsstore.MaxBatch, durable)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = st.AppendBatch(pctx, evs)
	cancel()
	if err != nil {
		return 0, err
	}
	// Losing this delete in a crash only republishes the batch, which the
	// stream drops as duplicates: no sync needed.
	if err := a.db.DeleteRange(first, append(last, 0), pebble.NoSync); err != nil {
		return 0, fmt.Errorf("outbox delete: %w", err)
	}
	a.outboxLen.Add(-int64(len(evs)))
	return len(evs), nil
}

// drain runs until ctx is done, publishing the outbox whenever it has events
// and the log can be reached; it retries with backoff while it cannot.
func (a *Agent) drain(ctx context.Context, conn *logConn) {
	delay := 50 * time.Millisecond
	logged := false
	for {
		err := a.drainAll(ctx, conn)
		var wait <-chan time.Time
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !logged {
				a.log.Warn("outbox: log not reachable, keeping events locally", "events", a.OutboxLen(), "err", err)
				logged = true
			}
			wait = time.After(delay)
			delay = min(delay*2, 2*time.Second)
		} else {
			if logged {
				a.log.Info("outbox: log reachable again, drained")
			}
			logged, delay = false, 50*time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-a.drainWake:
		case <-wait:
		}
	}
}

// drainAll publishes until the outbox is empty.
func (a *Agent) drainAll(ctx context.Context, conn *logConn) error {
	if _, err := a.syncLocal(); err != nil { // also offline: bound what a power loss can take
		return err
	}
	for a.OutboxLen() > 0 {
		st, err := conn.store(ctx)
		if err != nil {
			return err
		}
		n, err := a.drainOnce(ctx, st)
		if err != nil {
			if errors.Is(err, events.ErrInvalid) {
				a.log.Error("outbox: event refused by the log", "err", err)
			}
			return err
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}
