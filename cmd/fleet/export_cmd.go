package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
)

func init() {
	register("export", "Write the log (or one device's part of it) to NDJSON, for 'fleet import' into a sandbox.", "History", &ExportCmd{})
}

// ExportCmd is `fleet export`.
type ExportCmd struct {
	Out     string  `short:"O" name:"out" default:"-" placeholder:"FILE" help:"File to write ('-': standard output)."`
	Device  string  `placeholder:"ID" help:"Only this device's events."`
	FromSeq seqFlag `name:"from-seq" placeholder:"N" help:"Start at stream sequence N."`
	ToSeq   seqFlag `name:"to-seq" placeholder:"N" help:"Stop after stream sequence N."`
	Format  string  `short:"o" enum:"ndjson,json" default:"ndjson" help:"ndjson: one envelope a line (what 'fleet import' and 'replay --file' read); json: one JSON array of them (for jq and other tools)."`
}

// Help is shown by `fleet export --help`.
func (c *ExportCmd) Help() string {
	return `Writes the events in log order, one JSON envelope a line, exactly as stored
(id, type, device, resource, generation, event time 'at', actor, data). Stream
sequence and stream time are not written: they belong to the server that
stores the events. Importing the file into an empty server and exporting it
again gives the same bytes.

Examples:
  fleet export > fleet-log.ndjson
  fleet export --device pi-01 --out pi-01.ndjson
  fleet export --from-seq 100 --to-seq 200 -O slice.ndjson   # a slice (--verify wants a whole log)
  fleet replay --verify --file fleet-log.ndjson    # check an export offline
  fleet export --device pi-12 -o json | jq '.[] | select(.type == "ReconcileAttempted" and .data.error)'`
}

// Run writes the export.
func (c *ExportCmd) Run(ctx context.Context, g *Globals) error {
	f := events.Filter{Device: c.Device, FromSeq: uint64(c.FromSeq), ToSeq: uint64(c.ToSeq)}
	if c.Device != "" {
		if err := events.CheckID("--device", c.Device); err != nil {
			return err
		}
	}
	if c.ToSeq > 0 && c.FromSeq > c.ToSeq {
		return usagef("--to-seq %d is before --from-seq %d", c.ToSeq, c.FromSeq)
	}
	nc, st, err := g.Store(ctx, "fleet-export")
	if err != nil {
		return err
	}
	defer nc.Close()
	var w io.Writer = os.Stdout
	if c.Out != "-" {
		file, err := os.Create(c.Out)
		if err != nil {
			return usagef("--out: %v", err)
		}
		defer file.Close()
		w = file
	}
	var aw *arrayWriter
	if c.Format == "json" {
		aw = &arrayWriter{w: w, atStart: true}
		w = aw
	}
	n, err := replay.Export(w, st.Read(ctx, f))
	if err != nil {
		return err
	}
	if aw != nil {
		if err := aw.Close(); err != nil {
			return err
		}
	}
	if c.Out != "-" {
		fmt.Fprintf(os.Stderr, "exported %d events to %s\n", n, c.Out)
	}
	return nil
}

// arrayWriter turns NDJSON written to it into one JSON array on w, as it
// streams: an export is not held in memory.
type arrayWriter struct {
	w       io.Writer
	n       int
	atStart bool
}

func (a *arrayWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if a.atStart {
			sep := ",\n"
			if a.n == 0 {
				sep = "[\n"
			}
			if _, err := io.WriteString(a.w, sep); err != nil {
				return 0, err
			}
			a.atStart = false
			a.n++
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if _, err := a.w.Write(p); err != nil {
				return 0, err
			}
			break
		}
		if _, err := a.w.Write(p[:i]); err != nil {
			return 0, err
		}
		p = p[i+1:]
		a.atStart = true
	}
	return total, nil
}

// Close ends the array.
func (a *arrayWriter) Close() error {
	end := "\n]\n"
	if a.n == 0 {
		end = "[]\n"
	}
	_, err := io.WriteString(a.w, end)
	return err
}
