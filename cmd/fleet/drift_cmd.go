package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
)

func init() {
	register("drift", "Show drift history: what differed, when, and when and how it was corrected.", "Read side", &DriftCmd{})
}

// DriftCmd is `fleet drift [ID]`.
type DriftCmd struct {
	ID string `arg:"" optional:"" placeholder:"ID" help:"Device id; all devices if omitted."`
	Output
}

// Help is shown by `fleet drift --help`.
func (c *DriftCmd) Help() string {
	return `Without a device: one line per resource that ever drifted, with counts.
With a device: every recorded drift of its resources.

Examples:
  fleet drift
  fleet drift pi-01
  fleet drift pi-01 -o json`
}

// Run prints the drift history.
func (c *DriftCmd) Run(ctx context.Context, g *Globals) error {
	if c.ID != "" {
		if err := events.CheckID("device", c.ID); err != nil {
			return err
		}
	}
	cl, done, err := readClient(g)
	if err != nil {
		return err
	}
	defer done()
	hist, err := cl.Drift(ctx, c.ID)
	if err != nil {
		return err
	}
	if c.JSON() {
		return printJSON(hist)
	}
	if len(hist) == 0 {
		fmt.Println("no drift recorded")
		return nil
	}
	var rows [][]string
	if c.ID == "" {
		for _, r := range hist {
			last := r.Drifts[len(r.Drifts)-1]
			rows = append(rows, []string{r.Device, r.Resource, r.Kind, fmt.Sprint(r.Count), fmt.Sprint(r.Corrected), fmt.Sprint(r.Open), last.At.UTC().Format(time.RFC3339)})
		}
		return table(os.Stdout, []string{"DEVICE", "RESOURCE", "KIND", "DRIFTS", "CORRECTED", "OPEN", "LAST DRIFT"}, rows)
	}
	for _, r := range hist {
		for _, x := range r.Drifts {
			var diffs []string
			for _, d := range x.Differences {
				diffs = append(diffs, fmt.Sprintf("%s: want %s, found %s", d.Field, d.Expected, d.Observed))
			}
			fixed, how := "open", ""
			if x.CorrectedAt != nil {
				fixed, how = x.CorrectedAt.UTC().Format(time.RFC3339), x.CorrectedBy
			}
			rows = append(rows, []string{r.Resource, x.At.UTC().Format(time.RFC3339), strings.Join(diffs, "; "), fixed, how})
		}
	}
	return table(os.Stdout, []string{"RESOURCE", "DRIFTED", "WHAT DIFFERED", "CORRECTED", "HOW"}, rows)
}
