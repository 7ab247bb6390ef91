package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
)

func init() {
	register("replay", "Print the log (filtered), follow it live, or verify it against fleet's rules.", "History", &ReplayCmd{})
}

// ReplayCmd is `fleet replay`.
type ReplayCmd struct {
	Device   string   `placeholder:"ID" help:"Only this device's events."`
	Resource string   `placeholder:"ID" help:"Only this resource's events (needs --device)."`
	Type     []string `placeholder:"TYPE" help:"Only these event types (repeat or comma-separate): ManifestApplied, ReconcileAttempted, StatusChanged, DriftDetected, DeviceRegistered, DeviceDeregistered, ManifestRejected."`
	Since    string   `placeholder:"TIME" help:"Only events that happened at or after TIME (event time): RFC 3339 or a duration ago like 2h, 7d."`
	Until    string   `placeholder:"TIME" help:"Only events that happened at or before TIME (event time): RFC 3339 or a duration ago."`
	FromSeq  seqFlag  `name:"from-seq" placeholder:"N" help:"Start at stream sequence N."`
	ToSeq    seqFlag  `name:"to-seq" placeholder:"N" help:"Stop after stream sequence N."`
	Follow   bool     `short:"f" help:"Keep printing new events as they are stored (Ctrl-C to stop)."`
	Verify   bool     `help:"Check the events instead of printing them; exit 1 listing each violation."`
	File     string   `placeholder:"FILE" help:"Read an export (NDJSON from 'fleet export', or 'fleet replay -o ndjson') instead of the server; an export's sequences are its line numbers."`
	Format   string   `short:"o" enum:"table,json,ndjson" default:"table" help:"Output format: table, json or ndjson."`
}

// Help is shown by `fleet replay --help`.
func (c *ReplayCmd) Help() string {
	return `Prints events in log order with their stream sequence, stream time (when the
server stored them), event time (when they happened on the writer), device,
resource, type, manifest generation and the essential payload. --since and
--until filter by event time, so events an agent flushed late after being
offline are found where they happened.

--verify checks the events against fleet's rules and lists each violation with
its sequence: a status transition the fsm table forbids (or that does not start
where the resource was), a generation going backwards, an agent's event time or
id going backwards, a duplicate event id, a status for a resource absent from
the manifest of its generation, a message that is not a valid event, a
rollout decision its table forbids or a wave whose members are not its hash's;
on the whole log also each rollout gate decision (WaveFailed, WavePassed,
inconclusive RolloutPaused) re-derived from the device events before it
(kind gate). The last line counts events, devices and violations; the exit code is 1 if there is any.

Examples:
  fleet replay                                   # the whole log
  fleet replay --device pi-01 --since 2h         # what pi-01 did in the last 2 hours
  fleet replay --device pi-01 --resource motd --type StatusChanged
  fleet replay --from-seq 100 --to-seq 200 -o ndjson > slice.ndjson
  fleet replay --device pi-01 --follow           # live
  fleet replay --verify                          # check the whole log
  fleet replay --verify --file fleet-log.ndjson -o json      # an export ('fleet export --help')`
}

// filter builds the events filter from the flags, refusing bad values.
func (c *ReplayCmd) filter(now time.Time) (events.Filter, error) {
	f := events.Filter{Device: c.Device, Resource: c.Resource, FromSeq: uint64(c.FromSeq), ToSeq: uint64(c.ToSeq)}
	if c.Device != "" {
		if err := events.CheckID("--device", c.Device); err != nil {
			return f, err
		}
	}
	if c.Resource != "" {
		if c.Device == "" {
			return f, usagef("--resource %s: needs --device (resource ids are per device)", c.Resource)
		}
		if err := events.CheckID("--resource", c.Resource); err != nil {
			return f, err
		}
	}
	for _, t := range c.Type {
		for _, t := range strings.Split(t, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if !slices.Contains(events.Types(), t) {
				return f, usagef("--type %q: must be one of %s", t, strings.Join(events.Types(), ", "))
			}
			f.Types = append(f.Types, t)
		}
	}
	var err error
	if f.Since, err = replay.ParseTime(c.Since, now); err != nil {
		return f, usagef("--since: %v", err)
	}
	if f.Until, err = replay.ParseTime(c.Until, now); err != nil {
		return f, usagef("--until: %v", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && f.Until.Before(f.Since) {
		return f, usagef("--until %s is before --since %s", c.Until, c.Since)
	}
	if c.ToSeq > 0 && c.FromSeq > c.ToSeq {
		return f, usagef("--to-seq %d is before --from-seq %d", c.ToSeq, c.FromSeq)
	}
	return f, nil
}

// complete reports whether the filter selects whole histories from sequence 1.
func complete(f events.Filter) bool {
	return f.Resource == "" && len(f.Types) == 0 && f.Since.IsZero() && f.Until.IsZero() && f.FromSeq <= 1 && f.ToSeq == 0
}

// Run prints, follows or verifies.
func (c *ReplayCmd) Run(ctx context.Context, g *Globals) error {
	f, err := c.filter(time.Now())
	if err != nil {
		return err
	}
	if c.Follow && c.Verify {
		return usagef("--follow and --verify: pick one (verify checks a finished range)")
	}
	if c.Follow && c.ToSeq > 0 {
		return usagef("--follow and --to-seq: following has no end; drop one")
	}
	if c.Follow && c.File != "" {
		return usagef("--follow and --file: a file does not grow; drop --follow")
	}
	if c.Follow && c.Format == "json" {
		return usagef("-o json with --follow: a JSON array never ends; use -o ndjson")
	}
	var seq iter.Seq2[events.Stored, error]
	var st events.Store
	var followFrom uint64
	if c.File != "" {
		file, err := os.Open(c.File)
		if err != nil {
			return usagef("--file: %v", err)
		}
		defer file.Close()
		seq = fileRange(replay.ReadNDJSON(file), f)
	} else {
		nc, store, err := g.Store(ctx, "fleet-replay")
		if err != nil {
			return err
		}
		defer nc.Close()
		st = store
		if c.Follow {
			// read what is there up to a known sequence, then follow from the next one
			if followFrom, err = st.LastSeq(ctx); err != nil {
				return fmt.Errorf("read log: %w", err)
			}
			f.ToSeq = followFrom
			followFrom++
		}
		seq = st.Read(ctx, f)
	}
	if c.Verify {
		return c.verify(seq, complete(f))
	}
	p := newLinePrinter(os.Stdout, c.Format)
	if c.Follow && (f.ToSeq == 0 || f.FromSeq > f.ToSeq) {
		seq = func(func(events.Stored, error) bool) {} // an empty log, or --from-seq past its end: only follow
	}
	if _, err := p.print(seq); err != nil {
		return err
	}
	if p.unreadable != nil {
		if err := p.close(); err != nil {
			return err
		}
		return p.unreadable // the rest is printed; the command says the log is damaged
	}
	if c.Follow && ctx.Err() == nil {
		p.live = true
		live := f
		live.FromSeq = max(followFrom, f.FromSeq)
		if _, err := p.print(st.Follow(ctx, live)); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return p.close()
}

// fileRange applies a filter to the events of an export (line numbers stand
// for sequences).
func fileRange(seq iter.Seq2[events.Stored, error], f events.Filter) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) {
		for s, err := range seq {
			if err != nil {
				if !yield(s, err) {
					return
				}
				continue
			}
			if s.Seq < f.FromSeq || (f.ToSeq > 0 && s.Seq > f.ToSeq) || !f.Match(s) {
				continue
			}
			if !yield(s, nil) {
				return
			}
		}
	}
}

func (c *ReplayCmd) verify(seq iter.Seq2[events.Stored, error], complete bool) error {
	rep, err := verifyWithGates(seq, complete)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	switch c.Format {
	case "json":
		if rep.Violations == nil {
			rep.Violations = []replay.Violation{}
		}
		if err := printJSON(rep); err != nil {
			return err
		}
	case "ndjson":
		enc := json.NewEncoder(os.Stdout)
		for _, v := range rep.Violations {
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	default:
		for _, v := range rep.Violations {
			fmt.Println(v.String())
		}
		fmt.Println(rep.SummaryLine())
	}
	if !rep.OK() {
		return fmt.Errorf("verify: %d violations", len(rep.Violations))
	}
	return nil
}

// linePrinter prints events as they come: table rows with fixed columns (so
// that --follow needs no buffering), a JSON array, or NDJSON of the stored
// events.
type linePrinter struct {
	w      *bufio.Writer
	format string
	n      int
	bad    int
	live   bool // flush every line (--follow)
	// unreadable is the first message the log counts but could not give
	// (events.ErrUnreadable): reported where it was, the replay goes on,
	// and the command ends with it (exit 1) once the rest is printed.
	unreadable error
}

func newLinePrinter(w io.Writer, format string) *linePrinter {
	p := &linePrinter{w: bufio.NewWriterSize(w, 1<<16), format: format}
	switch format {
	case "table":
		fmt.Fprintf(p.w, tableFmt, replay.Header[0], replay.Header[1], replay.Header[2], replay.Header[3], replay.Header[4],
			replay.Header[5], replay.Header[6], replay.Header[7])
	case "json":
		p.w.WriteString("[")
	}
	return p
}

const tableFmt = "%-8s  %-24s  %-24s  %-16s  %-16s  %-18s  %-4s  %s\n"

// print writes every event of seq and returns the last sequence it saw.
// Messages that are not valid events are reported on stderr and skipped.
func (p *linePrinter) print(seq iter.Seq2[events.Stored, error]) (uint64, error) {
	var last uint64
	var line []byte
	for s, err := range seq {
		if err != nil {
			var bm *events.BadMessage
			if errors.As(err, &bm) {
				p.bad++
				last = max(last, bm.Seq)
				fmt.Fprintf(os.Stderr, "fleet replay: skipped %v\n", err)
				continue
			}
			var ue *events.UnreadableError
			if errors.As(err, &ue) {
				p.bad++
				last = max(last, ue.Seq, ue.Last)
				fmt.Fprintf(os.Stderr, "fleet replay: skipped: %v\n", err)
				if p.unreadable == nil {
					p.unreadable = err
				}
				continue
			}
			p.w.Flush()
			return last, err
		}
		last = s.Seq
		if err := events.CheckWriter(s); err != nil { // forged: reported, not printed as if true
			p.bad++
			fmt.Fprintf(os.Stderr, "fleet replay: skipped %v\n", err)
			continue
		}
		switch p.format {
		case "ndjson":
			line = append(events.AppendStoredJSON(line[:0], s), '\n')
			p.w.Write(line)
		case "json":
			if p.n > 0 {
				p.w.WriteString(",")
			}
			p.w.WriteString("\n  ")
			var b bytes.Buffer
			le := json.NewEncoder(&b)
			le.SetEscapeHTML(false)
			if err := le.Encode(replay.LineOf(s)); err != nil {
				return last, err
			}
			p.w.Write(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
		default:
			r := replay.LineOf(s).Row()
			fmt.Fprintf(p.w, tableFmt, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])
		}
		p.n++
		if p.live || p.w.Buffered() > 48<<10 {
			p.w.Flush()
		}
	}
	return last, p.w.Flush()
}

func (p *linePrinter) close() error {
	if p.format == "json" {
		if p.n > 0 {
			p.w.WriteString("\n")
		}
		p.w.WriteString("]\n")
	}
	return p.w.Flush()
}
