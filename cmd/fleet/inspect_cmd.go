package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

func init() {
	register("inspect", "Show a device as it was at a past time or stream position (time travel), or what changed between two.", "History", &InspectCmd{})
}

// InspectCmd is `fleet inspect`.
type InspectCmd struct {
	Device string  `arg:"" placeholder:"DEVICE" help:"Device id."`
	At     string  `placeholder:"TIME" help:"Moment to show (event time): RFC 3339 or a duration ago like 2h; default now."`
	Seq    seqFlag `placeholder:"N" help:"Show the device as of stream sequence N (1 or more) instead of a time."`
	Diff   string  `placeholder:"TIME2" help:"Also compute the device at TIME2 and show what changed from --at (or --seq) to it."`
	Fold   bool    `help:"Fold the device's events from the log even if the time-travel service runs (slow on long logs)."`
	Output
}

// Help is shown by `fleet inspect --help`.
func (c *InspectCmd) Help() string {
	return `The state of a device at T is the fold, in log order, of its events stamped at
or before T on the writer's clock (event time), so events an agent flushed late
after an offline period count from when they happened. Shows the manifest
generation in force, the observed generation, the conditions and each
resource's state. --seq N shows it as of a stream position instead.

The answer comes from the time-travel index of 'fleet server' (fast on long
logs); when no server part answers, fleet reads the device's events and folds
them (same fold, same answer, slower).

Examples:
  fleet inspect pi-01 --at 10s                     # ten seconds ago (2h; or 2026-05-01T12:00:00Z)
  fleet inspect pi-01 --seq 200 -o json            # the device JSON of the API
  fleet inspect pi-01 --at 10s --diff 1s           # what changed between 10s and 1s ago`
}

type inspectResult struct {
	device projections.Device
	exists bool
	how    string
}

// Run answers from the index, or by folding.
func (c *InspectCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("DEVICE", c.Device); err != nil {
		return err
	}
	now := time.Now()
	at, err := replay.ParseTime(c.At, now)
	if err != nil {
		return usagef("--at: %v", err)
	}
	seq := uint64(c.Seq)
	if !at.IsZero() && seq > 0 {
		return usagef("--at and --seq: give one")
	}
	var to time.Time
	if c.Diff != "" {
		if to, err = replay.ParseTime(c.Diff, now); err != nil {
			return usagef("--diff: %v", err)
		}
	}
	q := timetravel.Query{Device: c.Device, At: at, Seq: seq}
	if at.IsZero() && seq == 0 {
		q.At = now
	}
	nc, st, err := g.Store(ctx, "fleet-inspect")
	if err != nil {
		return err
	}
	defer nc.Close()
	a, err := c.answer(ctx, nc, st, q)
	if err != nil {
		return err
	}
	if c.Diff == "" {
		if !a.exists {
			return fmt.Errorf("device %s: %w at %s (no events of it by then, or deregistered)", c.Device, events.ErrNotFound, describe(q))
		}
		if c.JSON() {
			return printJSON(a.device)
		}
		printDevice(a.device, describe(q), a.how)
		return nil
	}
	q2 := timetravel.Query{Device: c.Device, At: to}
	b, err := c.answer(ctx, nc, st, q2)
	if err != nil {
		return err
	}
	changes := timetravel.Diff(a.device, b.device)
	if c.JSON() {
		out := map[string]any{"device": c.Device, "from": describe(q), "to": describe(q2), "changes": changes}
		if a.exists {
			out["before"] = a.device
		}
		if b.exists {
			out["after"] = b.device
		}
		if changes == nil {
			out["changes"] = []timetravel.Change{}
		}
		return printJSON(out)
	}
	fmt.Printf("device %s from %s to %s: %d changes (%s)\n", c.Device, describe(q), describe(q2), len(changes), a.how)
	rows := make([][]string, 0, len(changes))
	for _, ch := range changes {
		rows = append(rows, []string{ch.Field, dash(ch.From), dash(ch.To)})
	}
	return table(os.Stdout, []string{"FIELD", "FROM", "TO"}, rows)
}

func (c *InspectCmd) answer(ctx context.Context, nc *nats.Conn, st *jsstore.Store, q timetravel.Query) (inspectResult, error) {
	if !c.Fold {
		if last, err := st.LastSeq(ctx); err == nil {
			q.MinSeq = last // the index must have taken in what is on the stream now
		}
		rep, err := timetravel.Ask(ctx, nc, q)
		switch {
		case err == nil && rep.Checkpoint < q.MinSeq:
			// the index lags behind the stream: fold, so late events are not missed
		case err == nil:
			how := fmt.Sprintf("time-travel index at seq %d: snapshot after %d of %d events, %d folded onto it", rep.Checkpoint,
				rep.Stats.Snapshot, rep.Stats.Events, rep.Stats.Folded)
			if rep.Note != "" {
				fmt.Fprintln(os.Stderr, "fleet inspect: note:", rep.Note)
			}
			return inspectResult{rep.Device, rep.Exists, how}, nil
		case errors.Is(err, events.ErrInvalid):
			return inspectResult{}, err
		}
		// no service, a device it has not seen, or an error: the fold answers
	}
	if h, err := timetravel.LogHorizon(ctx, st); err == nil && h.Note(q) != "" {
		fmt.Fprintln(os.Stderr, "fleet inspect: note:", h.Note(q))
	}
	f := events.Filter{Device: q.Device}
	if q.At.IsZero() && q.Seq > 0 {
		f.ToSeq = q.Seq
	}
	d, ok, n, err := timetravel.FoldAt(st.Read(ctx, f), q)
	if err != nil {
		return inspectResult{}, err
	}
	return inspectResult{d, ok, fmt.Sprintf("full fold of %d events read from the log", n)}, nil
}

func describe(q timetravel.Query) string {
	if !q.At.IsZero() {
		return q.At.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("seq %d", q.Seq)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printDevice(d projections.Device, when, how string) {
	fmt.Printf("device %s at %s\n", d.Device, when)
	fmt.Printf("  generation %d (observed %d)", d.Generation, d.ObservedGeneration)
	if d.LastSeen != nil {
		fmt.Printf(", last seen %s", d.LastSeen.UTC().Format(time.RFC3339))
	}
	fmt.Println()
	if len(d.Labels) > 0 {
		var ls []string
		for k, v := range d.Labels {
			ls = append(ls, k+"="+v)
		}
		slices.Sort(ls)
		fmt.Printf("  labels %s\n", strings.Join(ls, ","))
	}
	for _, c := range d.Conditions {
		line := fmt.Sprintf("  %s=%s", c.Type, c.Status)
		if c.Reason != "" {
			line += " " + c.Reason
		}
		if c.Message != "" {
			line += ": " + c.Message
		}
		fmt.Println(line)
	}
	rows := make([][]string, 0, len(d.Resources))
	for _, r := range d.Resources {
		ra := "-"
		if r.RetryAfter != nil {
			ra = r.RetryAfter.UTC().Format(time.RFC3339)
		}
		since := "-"
		if !r.Since.IsZero() {
			since = r.Since.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{r.ID, r.Kind, r.State, since, fmt.Sprint(r.Attempts), dash(r.Error), ra})
	}
	fmt.Println()
	_ = table(os.Stdout, []string{"RESOURCE", "KIND", "STATE", "SINCE", "ATTEMPTS", "ERROR", "RETRY AFTER"}, rows)
	fmt.Printf("\n(%s)\n", how)
}
