package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// The export format is NDJSON: one event envelope (events.Event, exactly the
// JSON stored on the stream) a line, in log order. Stream sequence and stream
// time are not in it: they belong to the server that stores the events, so an
// export imported elsewhere and exported again is byte-identical.

// WriteEvent writes one event as an export line.
func WriteEvent(w io.Writer, e events.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// Export writes every event of seq to w in order. A message that does not
// decode stops the export (an export must be complete to be replayed)
// after the events before it are written out; it returns how many were.
func Export(w io.Writer, seq iter.Seq2[events.Stored, error]) (int, error) {
	bw := bufio.NewWriterSize(w, 1<<16)
	n := 0
	for s, err := range seq {
		if err != nil {
			// the n events before it are written out: the error says how many
			ferr := bw.Flush()
			return n, errors.Join(fmt.Errorf("export after %d events: %w", n, err), ferr)
		}
		if err := WriteEvent(bw, s.Event); err != nil {
			return n, err
		}
		n++
	}
	return n, bw.Flush()
}

// maxLine bounds one line of an export: an event is at most 1 MiB.
const maxLine = 2 << 20

// ReadNDJSON yields the events of an export in file order, each as a Stored
// whose Seq is its line number (no stream time). Lines of `fleet replay -o
// ndjson` (an event with seq, streamTime and subject) are read too, keeping
// their sequence and stream time. A line that is not a valid
// event is yielded as a *events.BadMessage (errors.Is events.ErrInvalid) with
// its line number, and reading goes on; an I/O error ends the sequence.
func ReadNDJSON(r io.Reader) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 1<<16), maxLine)
		var line uint64
		for sc.Scan() {
			line++
			b := sc.Bytes()
			if len(b) == 0 {
				continue
			}
			e, err := events.Decode(b)
			seq, st := line, time.Time{}
			if err != nil {
				if rs, rerr := events.DecodeStoredJSON(b); rerr == nil {
					e, seq, st, err = rs.Event, rs.Seq, rs.StreamTime, nil
				}
			}
			if err != nil {
				if !yield(events.Stored{}, &events.BadMessage{Seq: line, Subject: fmt.Sprintf("line %d", line), Err: err}) {
					return
				}
				continue
			}
			subj, _ := events.SubjectFor(e)
			if !yield(events.Stored{Event: e, Seq: seq, StreamTime: st, Subject: subj}, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(events.Stored{}, fmt.Errorf("read line %d: %w", line+1, err))
		}
	}
}

// Appender is what Import needs of a store.
type Appender interface {
	AppendBatch(ctx context.Context, evs []events.Event) error
}

// ImportBatch is how many events Import appends in one atomic batch.
const ImportBatch = 1000

// Import appends the events of seq to st in their order, keeping their ids
// and event times, in atomic batches. Any invalid line stops it before that
// line's batch is written, naming the line; progress, if not nil, is called
// after each batch with the count so far.
func Import(ctx context.Context, st Appender, seq iter.Seq2[events.Stored, error], progress func(n int)) (int, error) {
	batch := make([]events.Event, 0, ImportBatch)
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := st.AppendBatch(ctx, batch); err != nil {
			return fmt.Errorf("import after %d events: %w", n, err)
		}
		n += len(batch)
		batch = batch[:0]
		if progress != nil {
			progress(n)
		}
		return nil
	}
	for s, err := range seq {
		if err != nil {
			return n, fmt.Errorf("import: %w (%d events imported before it)", err, n)
		}
		batch = append(batch, s.Event)
		if len(batch) == ImportBatch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}
