// Command fleet-agent is the fleet device agent alone, for small devices:
// the same command as `fleet agent`, without the embedded server.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/internal/hint"
)

// CLI is fleet-agent's flags: the connection, then the agent command's.
type CLI struct {
	NATS    string `name:"nats" env:"FLEET_NATS" default:"nats://127.0.0.1:4222" placeholder:"URL" help:"NATS server to use."`
	Creds   string `name:"creds" env:"FLEET_CREDS" placeholder:"FILE" help:"NATS credentials file (from 'fleet device add')."`
	TLSCA   string `name:"tls-ca" env:"FLEET_TLS_CA" placeholder:"FILE" help:"Connect over TLS, trusting the server certificates of this CA (PEM; for 'fleet server --tls-cert')."`
	Version bool   `help:"Print the version and exit."`
	agentcli.Cmd
}

const description = "fleet-agent converges this device on its manifest and records every step.\n\n" +
	"Memory: the Go runtime's soft memory limit is 12 MiB unless GOMEMLIMIT is set (GOMEMLIMIT=64MiB for\n" +
	"a larger one, GOMEMLIMIT=off for none); past it the agent collects garbage more often, it never fails for it.\n" +
	"At start the agent unmaps the pages of its own binary that start-up touched and maps the ones it uses one\n" +
	"by one (they stay in the page cache): 2-3 MB less RSS. FLEET_AGENT_BINARY_PAGES=keep turns this off."

// defaultMemoryLimit is fleet-agent's soft memory limit (debug.SetMemoryLimit)
// when the operator sets no GOMEMLIMIT. The agent's live heap is 3-6 MB (50
// containers with probes, Pebble's 1 MB cache and 1 MB memtable included);
// with GOGC's default alone the heap grows to about twice that between
// collections. 12 MiB took a 50-container agent from 23.3-23.5 to 21.5-21.9 MB RSS
// at the same CPU; 10 MiB reached 20.0 MB without probes but tripled the CPU
// of 100 probe runs per 10 s (0.85 to 2.3-2.9 % of a core): GC running close
// to the live heap (BENCHMARKS.md, "Agent memory"). It is soft: a larger
// manifest's heap passes it, and the runtime caps the GC's CPU at about half
// rather than fail.
const defaultMemoryLimit = 12 << 20

// setMemoryLimit applies defaultMemoryLimit unless GOMEMLIMIT is set (the
// runtime has read the operator's value already).
func setMemoryLimit(getenv func(string) string) {
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	setMemoryLimit(os.Getenv)
	if os.Getenv("FLEET_AGENT_BINARY_PAGES") != "keep" {
		dropBinaryPages()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	err := parseFlags(&cli, args, os.Getenv)
	switch {
	case errors.Is(err, errHelp):
		usage(os.Stdout, &cli, "fleet-agent", description, helpText(&cli))
		return 0
	case err == nil && cli.Version:
		fmt.Println("fleet-agent", agent.Build())
		return 0
	case err != nil && slices.Contains(args, "--version"):
		fmt.Println("fleet-agent", agent.Build()) // as kong: --version wins over a missing --device
		return 0
	case err != nil:
		fmt.Fprintln(os.Stderr, "fleet-agent:", err)
		fmt.Fprintln(os.Stderr, "Run 'fleet-agent --help' for the flags and examples.")
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

// helpText is the agent command's long help as this binary is run: its
// examples say fleet-agent, not fleet agent.
func helpText(cli *CLI) string {
	return strings.ReplaceAll(cli.Help(), "fleet agent ", "fleet-agent ")
}

func exec(ctx context.Context, cli *CLI) error {
	if _, err := cli.Options(); err != nil {
		return err
	}
	opts := append([]nats.Option{nats.Name("fleet-agent " + cli.Device), nats.Timeout(5 * time.Second)}, append(agentcli.ConnectOptions(), cli.ConnectionLogging()...)...)
	if cli.Creds != "" {
		copts, err := auth.ClientOptions(cli.Creds) // a device's creds also set its inbox prefix
		err = hint.Permission(err, cli.Creds, "--creds", hint.CredsFix)
		if err != nil {
			return err
		}
		opts = append(opts, copts...)
	}
	topts, err := auth.TLSOptions(cli.TLSCA)
	if err != nil {
		return err
	}
	opts = append(opts, topts...)
	nc, err := nats.Connect(cli.NATS, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", cli.NATS, err)
	}
	defer nc.Close()
	return cli.Exec(ctx, nc, jsstore.NewLazy(nc), os.Stdout)
}
