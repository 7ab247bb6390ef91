package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// SelectorApplied is what `fleet apply --selector` did to one device.
type SelectorApplied struct {
	Device     string `json:"device"`
	Result     string `json:"result"` // applied, already, conflict, error
	Generation int64  `json:"generation,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
	ID         string `json:"id,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Results of an apply to one device.
const (
	appliedNew      = "applied"
	appliedAlready  = "already"
	appliedConflict = "conflict"
	appliedError    = "error"
)

// runSelector is `fleet apply --selector`: the manifest to every device
// whose labels match, one compare-and-set apply each (events.ApplyOnceAbove,
// as for --device), reported per device. It exits 1 if any device was not
// applied (after trying every one) or no device matches.
func (c *ApplyCmd) runSelector(ctx context.Context, g *Globals) error {
	if _, err := projections.ParseSelector(c.Selector); err != nil {
		return fmt.Errorf("--selector: %w", err)
	}
	actor, err := operator()
	if err != nil {
		return err
	}
	data, err := readInput(c.File)
	if err != nil {
		return usageError{err}
	}
	m, err := events.ParseManifest(data)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", c.File, err)
	}
	var signer events.Signer
	if c.Key != "" {
		s, err := events.LoadSigner(c.Key)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return usageError{fmt.Errorf("--key: %w", err)}
			}
			return err
		}
		signer = s
	}
	nc, st, err := g.Store(ctx, "fleet-apply")
	if err != nil {
		return err
	}
	defer nc.Close()
	ds, _, _, err := api.NewClient(nc).EachSummary(ctx, api.ListOptions{Selector: c.Selector, Limit: api.MaxLimit}, 0)
	if err != nil {
		return fmt.Errorf("list devices for selector %q: %w (is the projection service running in 'fleet server'?)", c.Selector, err)
	}
	if len(ds) == 0 {
		return fmt.Errorf("selector %q: no device matches: %w; see 'fleet get devices --selector'", c.Selector, events.ErrNotFound)
	}
	if c.DryRun {
		var out []SelectorApplied
		for _, d := range ds {
			out = append(out, SelectorApplied{Device: d.Device, Result: "would-apply", Generation: d.Generation + 1})
		}
		return c.printSelector(out, len(m.Resources), true)
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	var out []SelectorApplied
	failed := 0
	for _, d := range ds {
		r := applyOne(ctx, nc, st, clock, d.Device, m, actor, signer)
		if r.Result == appliedConflict || r.Result == appliedError {
			failed++
		}
		out = append(out, r)
	}
	if err := c.printSelector(out, len(m.Resources), false); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("apply --selector %q: %d of %d devices not applied (see the table); re-running is safe: devices that have it already are left alone", c.Selector, failed, len(out))
	}
	return nil
}

// applyOne applies m to one device, as `fleet apply --device` does.
func applyOne(ctx context.Context, nc *nats.Conn, st *jsstore.Store, clock *events.Clock, device string, m events.Manifest, actor string, signer events.Signer) SelectorApplied {
	floor, _ := generationFloor(ctx, nc, st.JetStream(), device)
	res, err := events.ApplyOnceAbove(ctx, st, clock, device, m, actor, signer, floor)
	switch {
	case errors.Is(err, events.ErrConflict):
		return SelectorApplied{Device: device, Result: appliedConflict, Error: err.Error()}
	case err != nil:
		return SelectorApplied{Device: device, Result: appliedError, Error: err.Error()}
	case res.Already:
		return SelectorApplied{Device: device, Result: appliedAlready, Generation: res.Generation, Seq: res.Seq, ID: res.Event.ID}
	}
	return SelectorApplied{Device: device, Result: appliedNew, Generation: res.Generation, Seq: res.Seq, ID: res.Event.ID}
}

func (c *ApplyCmd) printSelector(out []SelectorApplied, resources int, dry bool) error {
	if c.JSON() {
		return printJSON(map[string]any{"selector": c.Selector, "dryRun": dry, "devices": out})
	}
	var rows [][]string
	for _, r := range out {
		gen, seq := "-", "-"
		if r.Generation > 0 {
			gen = fmt.Sprint(r.Generation)
		}
		if r.Seq > 0 {
			seq = fmt.Sprint(r.Seq)
		}
		rows = append(rows, []string{r.Device, r.Result, gen, seq, r.Error})
	}
	if dry {
		fmt.Printf("manifest %s is valid: %d resources; %d devices match %q (dry run, nothing written)\n", c.File, resources, len(out), c.Selector)
	}
	return table(os.Stdout, []string{"DEVICE", "RESULT", "GENERATION", "SEQ", "ERROR"}, rows)
}
