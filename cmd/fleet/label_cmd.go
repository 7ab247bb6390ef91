package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func init() {
	register("label", "Set or remove a device's labels from the control plane (k=v to set, k- to remove).", "Control plane", &LabelCmd{})
}

// LabelCmd is `fleet label DEVICE k=v ... k-`.
type LabelCmd struct {
	Device string   `arg:"" placeholder:"DEVICE" help:"Device to label."`
	Labels []string `arg:"" placeholder:"k=v|k-" help:"Labels to set (key=value) or remove (key-)."`
	Output
}

// Help is shown by `fleet label --help`.
func (c *LabelCmd) Help() string {
	return `Appends a DeviceLabeled event to the device's labels subject
(fleet.DEVICE.labels), which only the control plane writes. The device read
model merges these with the labels the agent reports (fleet agent --label),
and the control plane wins: a key set here shows this value whatever the
agent says, and a key removed here is hidden (the agent's too) until it is
set here again. Selectors ('fleet get devices --selector', 'fleet apply
--selector', rollouts) see the merged labels.

Keys follow the id rule (1 to 64 characters of A-Z, a-z, 0-9, '_' or '-');
values are at most 256 bytes (a selector can only name values of up to 63
characters of A-Z, a-z, 0-9, '-', '_', '.').

Examples:
  fleet label pi-01 site=lab role=kiosk
  fleet label pi-01 canary-          # remove canary
  fleet label pi-01 ring=2 canary- -o json`
}

// parseLabelArgs reads k=v and k- arguments.
func parseLabelArgs(args []string) (set map[string]string, remove []string, err error) {
	set = map[string]string{}
	seen := map[string]bool{}
	for _, a := range args {
		var k, v string
		removeIt := false
		if key, val, ok := strings.Cut(a, "="); ok {
			k, v = key, val
		} else if key, ok := strings.CutSuffix(a, "-"); ok {
			k, removeIt = key, true
		} else {
			return nil, nil, fmt.Errorf("%w: label %q: must be key=value (set) or key- (remove)", events.ErrInvalid, a)
		}
		if err := events.CheckLabel(k, v); err != nil {
			return nil, nil, err
		}
		if seen[k] {
			return nil, nil, fmt.Errorf("%w: label %s: given twice: give each key once", events.ErrInvalid, k)
		}
		seen[k] = true
		if removeIt {
			remove = append(remove, k)
		} else {
			set[k] = v
		}
	}
	if len(set) == 0 {
		set = nil
	}
	sort.Strings(remove)
	return set, remove, nil
}

// Run appends the DeviceLabeled event.
func (c *LabelCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.Device); err != nil {
		return err
	}
	set, remove, err := parseLabelArgs(c.Labels)
	if err != nil {
		return err
	}
	actor, err := operator()
	if err != nil {
		return err
	}
	nc, st, err := g.Store(ctx, "fleet-label")
	if err != nil {
		return err
	}
	defer nc.Close()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	seq, e, err := appendLabels(ctx, st, clock, c.Device, actor, set, remove)
	if err != nil {
		return err
	}
	if c.JSON() {
		return printJSON(map[string]any{"device": c.Device, "set": set, "remove": remove, "seq": seq, "id": e.ID})
	}
	var parts []string
	for k, v := range set {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	for _, k := range remove {
		parts = append(parts, k+"-")
	}
	fmt.Printf("device %s: labels %s (sequence %d)\n", c.Device, strings.Join(parts, " "), seq)
	return nil
}

// appendLabels appends a DeviceLabeled compare-and-set on the device's
// labels subject, so that the log holds it once also when an
// acknowledgement is lost; a race with another operator is retried (the
// event is a change of some keys, not a whole set, so it applies on top of
// whatever was written meanwhile).
func appendLabels(ctx context.Context, st *jsstore.Store, clock *events.Clock, device, actor string, set map[string]string, remove []string) (uint64, events.Event, error) {
	e, err := events.New(device, "", 0, actor, events.DeviceLabeled{Set: set, Remove: remove})
	if err != nil {
		return 0, e, err
	}
	clock.Stamp(&e)
	e.Correlation = e.ID
	if err := e.Check(); err != nil {
		return 0, e, err
	}
	subj := events.LabelsSubject(device)
	for attempt := 0; ; attempt++ {
		last, err := st.LastSeqOn(ctx, subj)
		if err != nil {
			return 0, e, fmt.Errorf("label %s: %w", device, err)
		}
		seq, err := st.AppendExpect(ctx, e, last)
		if err == nil {
			return seq, e, nil
		}
		if !errors.Is(err, events.ErrConflict) || attempt == 4 {
			return 0, e, fmt.Errorf("label %s: %w", device, err)
		}
	}
}
