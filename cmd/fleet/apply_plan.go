package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// Plan actions of one resource.
const (
	planAdd    = "add"
	planChange = "change"
	planRemove = "remove"
	planSame   = "unchanged"
)

// PlanStep is what applying does to one resource.
type PlanStep struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Action string `json:"action"` // add, change, remove, unchanged
}

// ApplyPlan is a manifest against the device's current generation.
type ApplyPlan struct {
	Generation int64      `json:"currentGeneration"` // 0: the device has no manifest yet
	Steps      []PlanStep `json:"plan"`
	Current    []string   `json:"-"` // the current manifest's resource ids
	Same       bool       `json:"sameDigest"`
}

// Count returns how many steps have action a.
func (p ApplyPlan) Count(a string) int {
	n := 0
	for _, s := range p.Steps {
		if s.Action == a {
			n++
		}
	}
	return n
}

// planApply compares m with device's last manifest on the log: resources
// by id, a change being any difference in the resource's manifest form.
func planApply(ctx context.Context, st *jsstore.Store, device string, m events.Manifest) (ApplyPlan, error) {
	var plan ApplyPlan
	cur := map[string]events.Resource{}
	var order []string
	lm, err := st.LastManifest(ctx, device)
	switch {
	case errors.Is(err, events.ErrNotFound):
	case err != nil:
		return plan, err
	default:
		plan.Generation = lm.Generation
		p, err := lm.Payload()
		if err != nil {
			return plan, err
		}
		ma := p.(*events.ManifestApplied)
		plan.Same = ma.Digest == m.Digest()
		for _, r := range ma.Manifest.Resources {
			cur[r.ID] = r
			order = append(order, r.ID)
		}
	}
	plan.Current = order
	next := map[string]bool{}
	for _, r := range m.Resources {
		next[r.ID] = true
		step := PlanStep{ID: r.ID, Kind: kindOf(r), Action: planAdd}
		if old, ok := cur[r.ID]; ok {
			step.Action = planSame
			a, _ := json.Marshal(old)
			b, _ := json.Marshal(r)
			if !bytes.Equal(a, b) {
				step.Action = planChange
			}
		}
		plan.Steps = append(plan.Steps, step)
	}
	for _, id := range order {
		if !next[id] {
			plan.Steps = append(plan.Steps, PlanStep{ID: id, Kind: kindOf(cur[id]), Action: planRemove})
		}
	}
	return plan, nil
}

func kindOf(r events.Resource) string {
	switch {
	case r.File != nil:
		return "file"
	case r.SystemdUnit != nil:
		return "systemdUnit"
	case r.Container != nil:
		return "container"
	case r.Exec != nil:
		return "exec"
	}
	return r.Kind
}

// printValid is the dry run without a server: the manifest is valid.
func (c *ApplyCmd) printValid(m events.Manifest) error {
	if c.JSON() {
		return printJSON(map[string]any{"device": c.Device, "valid": true, "resources": len(m.Resources), "digest": m.Digest()})
	}
	fmt.Printf("manifest %s is valid: %d resources, digest %s (dry run, nothing written)\n", c.File, len(m.Resources), m.Digest()[:12])
	return nil
}

// printPlan prints the dry run's plan.
func (c *ApplyCmd) printPlan(m events.Manifest, p ApplyPlan) error {
	if c.JSON() {
		return printJSON(planJSON(c.Device, m, p, c.AllowEmpty))
	}
	printPlanText(c.Device, c.File, m, p, c.AllowEmpty)
	return nil
}

// removesEverything: applying m removes every resource the device has.
func (p ApplyPlan) removesEverything(m events.Manifest) bool {
	return len(m.Resources) == 0 && len(p.Current) > 0
}

// planJSON is one device's plan for -o json.
func planJSON(device string, m events.Manifest, p ApplyPlan, allowEmpty bool) map[string]any {
	steps := p.Steps
	if steps == nil {
		steps = []PlanStep{}
	}
	empty := p.removesEverything(m)
	return map[string]any{"device": device, "valid": true, "dryRun": true, "resources": len(m.Resources),
		"digest": m.Digest(), "currentGeneration": p.Generation, "sameDigest": p.Same, "plan": steps,
		"add": p.Count(planAdd), "change": p.Count(planChange), "remove": p.Count(planRemove),
		"removesEverything": empty, "needsAllowEmpty": empty && !allowEmpty}
}

// printPlanText prints one device's plan: a line a resource, then the counts.
func printPlanText(device, file string, m events.Manifest, p ApplyPlan, allowEmpty bool) {
	nextGen := p.Generation + 1
	if p.Same {
		nextGen = p.Generation // applying again writes nothing when it is from you; else a new generation
	}
	cur := "no manifest yet"
	if p.Generation > 0 {
		cur = fmt.Sprintf("generation %d", p.Generation)
	}
	fmt.Printf("device %s: plan for %s against %s (dry run, nothing written)\n", device, file, cur)
	sign := map[string]string{planAdd: "+", planChange: "~", planRemove: "-", planSame: "="}
	for _, s := range p.Steps {
		fmt.Printf("  %s %-9s %-12s %s\n", sign[s.Action], s.Action, s.Kind, s.ID)
	}
	summary := fmt.Sprintf("%d to add, %d to change, %d to remove", p.Count(planAdd), p.Count(planChange), p.Count(planRemove))
	if p.Same {
		summary += "; the same manifest as generation " + fmt.Sprint(p.Generation)
	} else {
		summary += fmt.Sprintf("; applying makes generation %d", nextGen)
	}
	fmt.Println(summary)
	if p.removesEverything(m) && !allowEmpty {
		fmt.Printf("this removes every resource of %s: applying it needs --allow-empty\n", device)
	}
}

// warnUnregistered warns (on stderr) when no agent ever registered device:
// the manifest is still stored, and applied when an agent starts with it.
func warnUnregistered(ctx context.Context, st *jsstore.Store, device string) {
	s, err := st.JetStream().Stream(ctx, events.Stream)
	if err != nil {
		return
	}
	_, err = s.GetLastMsgForSubject(ctx, events.LifecycleSubject(device))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		fmt.Fprintf(os.Stderr, "fleet apply: warning: device %s has never registered (no agent has started with --device %s): "+
			"the manifest is stored and applies when one does; check the id (fleet get devices)\n", device, strings.TrimSpace(device))
	}
}
