// Command fleet keeps a fleet of edge devices converged on a typed desired
// state and keeps an immutable record of everything that happened on the way.
//
// main only wires commands: each command is a struct in its own file
// (*_cmd.go) that registers itself with register() and has Run(ctx, globals).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/alecthomas/kong"
	kongcompletion "github.com/jotaen/kong-completion"

	"github.com/fleet-dev/fleet/events"
)

// version is set by the linker (-X main.version=...).
var version = "dev"

// CLI is the root: global flags; commands are added by register.
type CLI struct {
	Globals
	Version kong.VersionFlag `help:"Print the version and exit."`
}

type command struct {
	name, help, group string
	cmd               any
}

var commands []command

// register adds a command; called from each command file's init.
func register(name, help, group string, cmd any) {
	commands = append(commands, command{name, help, group, cmd})
}

// groupOrder is the order of command groups in --help: first things first.
var groupOrder = []string{"Getting started", "Control plane", "Device", "Read side", "History", "Trust"}

func groupRank(g string) int {
	for i, o := range groupOrder {
		if o == g {
			return i
		}
	}
	return len(groupOrder)
}

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error as bad usage or input (exit code 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), errors.Is(err, events.ErrInvalid):
		return exitUsage
	}
	return exitFailure
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	startPprof()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cli CLI
	opts := []kong.Option{
		kong.Name("fleet"),
		kong.Description("fleet keeps edge devices converged on a typed desired state, with an immutable record of every change.\n\nStart here: fleet demo"),
		kong.UsageOnError(),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
		kong.Help(helpPrinter),
		kong.Exit(exitAfterHelp),
		kong.Vars{"version": "fleet " + buildInfo().String(), "default_nats": DefaultNATS},
		kong.BindTo(ctx, (*context.Context)(nil)),
	}
	sort.SliceStable(commands, func(i, j int) bool { return groupRank(commands[i].group) < groupRank(commands[j].group) })
	for _, c := range commands {
		opts = append(opts, kong.DynamicCommand(c.name, c.help, c.group, c.cmd))
	}
	parser, err := kong.New(&cli, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		return exitFailure
	}
	// A shell asking for completions (COMP_LINE set) is answered here.
	kongcompletion.Register(parser)
	kctx, err := parser.Parse(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		fmt.Fprintln(os.Stderr, "Run 'fleet --help' for the commands, 'fleet COMMAND --help' for one.")
		return exitUsage
	}
	warnIgnoredGlobals(kctx)
	err = kctx.Run(&cli.Globals)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
	}
	return exitCode(err)
}
