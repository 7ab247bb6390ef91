package main

import (
	"context"
	"errors"
	"fmt"
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
	m, err := loadManifest(c.File)
	if err != nil {
		return err
	}
	signer, _, err := loadSigner(c.Key)
	if err != nil {
		return err
	}
	nc, st, err := g.Store(ctx, "fleet-apply")
	if err != nil {
		return err
	}
	defer nc.Close()
	ds, err := selectedDevices(ctx, nc, c.Selector)
	if err != nil {
		return err
	}
	plans := make([]ApplyPlan, len(ds))
	var emptied []string
	for i, d := range ds {
		if plans[i], err = planApply(ctx, st, d.Device, m); err != nil {
			return fmt.Errorf("apply to %s: read the current generation: %w", d.Device, err)
		}
		if plans[i].removesEverything(m) {
			emptied = append(emptied, d.Device)
		}
	}
	if c.DryRun {
		return c.printSelectorPlans(ds, m, plans)
	}
	if len(emptied) > 0 && !c.AllowEmpty {
		return usagef("manifest %s has no resources: applying it removes every resource of %d of the %d devices %q matches (%s); "+
			"nothing was written; give --allow-empty if that is what you want (see the plans with --dry-run)", c.File, len(emptied), len(ds), c.Selector, listText(emptied))
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
	if err := c.printSelector(out); err != nil {
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

func (c *ApplyCmd) printSelector(out []SelectorApplied) error {
	if c.JSON() {
		return printJSON(map[string]any{"selector": c.Selector, "dryRun": false, "devices": out})
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
	return table(os.Stdout, []string{"DEVICE", "RESULT", "GENERATION", "SEQ", "ERROR"}, rows)
}

// printSelectorPlans is `apply --selector --dry-run`: each device's plan, as
// `apply --device --dry-run` prints it.
func (c *ApplyCmd) printSelectorPlans(ds []api.DeviceSummary, m events.Manifest, plans []ApplyPlan) error {
	if c.JSON() {
		out := make([]map[string]any, len(ds))
		needs := false
		for i, d := range ds {
			out[i] = planJSON(d.Device, m, plans[i], c.AllowEmpty)
			needs = needs || out[i]["needsAllowEmpty"].(bool)
		}
		return printJSON(map[string]any{"selector": c.Selector, "dryRun": true, "valid": true, "resources": len(m.Resources),
			"digest": m.Digest(), "needsAllowEmpty": needs, "devices": out})
	}
	fmt.Printf("manifest %s is valid: %d resources; %d devices match %q (dry run, nothing written)\n", c.File, len(m.Resources), len(ds), c.Selector)
	for i, d := range ds {
		printPlanText(d.Device, c.File, m, plans[i], c.AllowEmpty)
	}
	return nil
}

// selectedDevices lists the devices the read models say match selector
// (apply --selector and rollout start): an error when none does.
func selectedDevices(ctx context.Context, nc *nats.Conn, selector string) ([]api.DeviceSummary, error) {
	ds, _, _, err := api.NewClient(nc).EachSummary(ctx, api.ListOptions{Selector: selector, Limit: api.MaxLimit}, 0)
	if err != nil {
		return nil, fmt.Errorf("list devices for selector %q: %w (is the projection service running in 'fleet server'?)", selector, err)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("selector %q: no device matches: %w; see 'fleet get devices --selector'", selector, events.ErrNotFound)
	}
	return ds, nil
}
