package main

import (
	"context"
	"os"

	"github.com/alecthomas/kong"

	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/agent/agentcli/agentkong"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func init() {
	register("agent", "Run the device agent: converge this device on its manifest and record every step.", "Device", &AgentCmd{})
}

// AgentCmd is `fleet agent` (the same command as the fleet-agent binary).
type AgentCmd struct {
	agentcli.Cmd
}

// BeforeResolve reads the config file named by --config (or
// $FLEET_AGENT_CONFIG): its keys fill the flags the command line and the
// environment did not give.
func (c *AgentCmd) BeforeResolve(kctx *kong.Context) error { return agentkong.BeforeResolve(kctx) }

// Run connects (starting offline if the server is away) and runs the agent.
func (c *AgentCmd) Run(ctx context.Context, g *Globals) error {
	if _, err := c.Options(); err != nil {
		return err
	}
	nc, err := g.Connect("fleet-agent "+c.Device, append(agentcli.ConnectOptions(), c.ConnectionLogging()...)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	return c.Exec(ctx, nc, jsstore.NewLazy(nc), os.Stdout)
}
