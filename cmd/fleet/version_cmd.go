package main

import (
	"context"
	"fmt"

	"github.com/fleet-dev/fleet/agent"
)

func init() {
	register("version", "Print fleet's version, VCS revision, Go version and platform.", "Getting started", &VersionCmd{})
}

// VersionCmd is `fleet version`.
type VersionCmd struct {
	Output
}

// Help is shown by `fleet version --help`.
func (c *VersionCmd) Help() string {
	return `The version and revision are set by 'just release' (bash .ci/release);
a plain 'go build' in a checkout records the revision itself.
The agent on a device says the same with 'fleet-agent --version', and records
its version in DeviceRegistered ('fleet get device ID' shows it).

Examples:
  fleet version
  fleet version -o json`
}

// Run prints the build information.
func (c *VersionCmd) Run(ctx context.Context, g *Globals) error {
	b := buildInfo()
	if c.JSON() {
		return printJSON(b)
	}
	fmt.Println("fleet", b)
	return nil
}

// buildInfo is the binary's build information; the fleet binary's version
// (main.version) wins over the agent package's, they are set together by the
// release script.
func buildInfo() agent.BuildInfo {
	b := agent.Build()
	if version != "dev" {
		b.Version = version
	}
	return b
}
