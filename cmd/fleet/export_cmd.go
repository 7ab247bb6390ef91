package main

import (
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
  fleet export --from-seq 5000 --to-seq 9000 -O incident.ndjson
  fleet replay --verify --file incident.ndjson     # check an export offline`
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
	n, err := replay.Export(w, st.Read(ctx, f))
	if err != nil {
		return err
	}
	if c.Out != "-" {
		fmt.Fprintf(os.Stderr, "exported %d events to %s\n", n, c.Out)
	}
	return nil
}
