package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
)

func init() {
	register("explain", "Say why a resource is not Ready: its manifest, who applied it, the last attempts, the next retry.", "Read side", &ExplainCmd{})
}

// ExplainCmd is `fleet explain ID RESOURCE`.
type ExplainCmd struct {
	ID       string `arg:"" placeholder:"ID" help:"Device id."`
	Resource string `arg:"" placeholder:"RESOURCE" help:"Resource id."`
	Output
}

// Help is shown by `fleet explain --help`.
func (c *ExplainCmd) Help() string {
	return `Follows the chain from the manifest generation that asks for the resource
(and who applied it) through its current state to the last attempts with their
errors and the next retry, and, when a rollout matches the device, that
rollout: whether it holds the device (its wave not started, the rollout
paused) and why.

Examples:
  fleet explain pi-12 sensor-calib              # the demo's resource meant to fail
  fleet explain pi-01 motd -o json`
}

// Run prints the explanation.
func (c *ExplainCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.ID); err != nil {
		return err
	}
	if err := events.CheckID("resource", c.Resource); err != nil {
		return err
	}
	cl, done, err := readClient(g)
	if err != nil {
		return err
	}
	defer done()
	x, err := cl.Explain(ctx, c.ID, c.Resource)
	holds, herr := heldBy(ctx, g, c.ID)
	if herr != nil {
		// the rollouts are an addition: without the log (no JetStream, no
		// permission) the explanation stands alone
		fmt.Fprintf(os.Stderr, "fleet explain: warning: rollouts not read: %v\n", herr)
	}
	if err != nil {
		if errors.Is(err, events.ErrNotFound) && len(holds) > 0 {
			// not on the device yet: the rollout holding it says why
			if c.JSON() {
				return printJSON(map[string]any{"device": c.ID, "resource": c.Resource, "error": err.Error(), "rollouts": holds})
			}
			fmt.Printf("%s/%s: %v\n", c.ID, c.Resource, err)
			printHolds(holds)
			return nil
		}
		return err
	}
	if c.JSON() {
		return printJSON(struct {
			projections.Explanation
			Rollouts []api.RolloutHold `json:"rollouts,omitempty"`
		}{x, holds})
	}
	fmt.Printf("%s/%s (%s) is %s\n", x.Device, x.Resource, x.Kind, x.State)
	for _, w := range x.Why {
		fmt.Println("  - " + w)
	}
	printHolds(holds)
	return nil
}

// heldBy lists the rollouts holding device, read from the log.
func heldBy(ctx context.Context, g *Globals, device string) ([]api.RolloutHold, error) {
	nc, st, err := g.Store(ctx, "fleet-explain")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	return (&rollouts.Reader{Log: st}).HeldBy(ctx, device)
}

func printHolds(holds []api.RolloutHold) {
	for _, h := range holds {
		verb := "in"
		if h.Held {
			verb = "held by"
		}
		fmt.Printf("  - %s rollout %s (%s): %s\n", verb, h.Rollout, h.State, h.Reason)
	}
}
