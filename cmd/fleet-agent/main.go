// Command fleet-agent is the fleet device agent alone, for small devices:
// the same command as `fleet agent`, without the embedded server.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
)

// CLI is fleet-agent's flags: the connection, then the agent command's.
type CLI struct {
	NATS    string           `name:"nats" env:"FLEET_NATS" default:"nats://127.0.0.1:4222" placeholder:"URL" help:"NATS server to use."`
	Creds   string           `name:"creds" env:"FLEET_CREDS" placeholder:"FILE" help:"NATS credentials file (from 'fleet device add')."`
	Version kong.VersionFlag `help:"Print the version and exit."`
	agentcli.Cmd
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	parser, err := kong.New(&cli, kong.Name("fleet-agent"),
		kong.Description("fleet-agent converges this device on its manifest and records every step."),
		kong.UsageOnError(), kong.Vars{"version": agent.Version})
	if err == nil {
		_, err = parser.Parse(args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet-agent:", err)
		return 2
	}
	if err := exec(ctx, &cli); err != nil {
		fmt.Fprintln(os.Stderr, "fleet-agent:", err)
		if errors.Is(err, events.ErrInvalid) {
			return 2
		}
		return 1
	}
	return 0
}

func exec(ctx context.Context, cli *CLI) error {
	if _, err := cli.Options(); err != nil {
		return err
	}
	opts := append([]nats.Option{nats.Name("fleet-agent " + cli.Device), nats.Timeout(5 * time.Second)}, agentcli.ConnectOptions()...)
	if cli.Creds != "" {
		copts, err := auth.ClientOptions(cli.Creds) // a device's creds also set its inbox prefix
		if err != nil {
			return err
		}
		opts = append(opts, copts...)
	}
	nc, err := nats.Connect(cli.NATS, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", cli.NATS, err)
	}
	defer nc.Close()
	return cli.Exec(ctx, nc, os.Stdout)
}
