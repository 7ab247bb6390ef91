package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/alecthomas/kong"
)

// offline marks a command that never connects to NATS: the global flags
// (--nats, --creds, --tls-ca) do nothing there, so its --help does not list
// them and giving one says so.
type offline interface{ offline() }

func (*DemoCmd) offline()       {} // runs its own server
func (*SiteCmd) offline()       {} // runs its own server, joined to --hub
func (*VersionCmd) offline()    {}
func (*CompletionCmd) offline() {}
func (*KeyNewCmd) offline()     {}
func (*KeyShowCmd) offline()    {}
func (*DeviceListCmd) offline() {} // reads DATA/auth only

// exitAfterHelp is how kong exits after --help (a test stops there instead).
var exitAfterHelp = os.Exit

// globalFlags are the root's flags that only connecting commands use.
var globalFlags = []string{"nats", "creds", "tls-ca"}

// usesGlobals: a command that connects, or a group with one that does.
func usesGlobals(n *kong.Node) bool {
	if n == nil || n.Type == kong.ApplicationNode {
		return true
	}
	if len(n.Children) > 0 {
		for _, c := range n.Children {
			if usesGlobals(c) {
				return true
			}
		}
		return false
	}
	if !n.Target.IsValid() || !n.Target.CanAddr() {
		return true
	}
	_, off := n.Target.Addr().Interface().(offline)
	return !off
}

// helpPrinter is kong's, with the global flags hidden on commands that
// ignore them.
func helpPrinter(options kong.HelpOptions, ctx *kong.Context) error {
	if !usesGlobals(ctx.Selected()) {
		for _, f := range ctx.Model.Node.Flags {
			for _, name := range globalFlags {
				if f.Name == name && !f.Hidden {
					f.Hidden = true
					defer func(f *kong.Flag) { f.Hidden = false }(f)
				}
			}
		}
	}
	return kong.DefaultHelpPrinter(options, ctx)
}

// warnIgnoredGlobals warns when a global flag is given to a command that
// does not use it (the environment's FLEET_NATS and the like are not).
func warnIgnoredGlobals(kctx *kong.Context) {
	n := kctx.Selected()
	if usesGlobals(n) {
		return
	}
	for _, p := range kctx.Path {
		if p.Flag == nil {
			continue
		}
		for _, name := range globalFlags {
			if p.Flag.Name == name {
				fmt.Fprintf(os.Stderr, "fleet: warning: --%s has no effect on 'fleet %s': it does not connect to NATS\n", name, strings.TrimSpace(n.FullPath()[len("fleet"):]))
			}
		}
	}
}
