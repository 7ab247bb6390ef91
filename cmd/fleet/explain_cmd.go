package main

import (
	"context"
	"fmt"

	"github.com/fleet-dev/fleet/events"
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
errors and the next retry.

Examples:
  fleet explain pi-01 nginx
  fleet explain pi-01 nginx -o json`
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
	if err != nil {
		return err
	}
	if c.JSON() {
		return printJSON(x)
	}
	fmt.Printf("%s/%s (%s) is %s\n", x.Device, x.Resource, x.Kind, x.State)
	for _, w := range x.Why {
		fmt.Println("  - " + w)
	}
	return nil
}
