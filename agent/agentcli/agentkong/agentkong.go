// Package agentkong reads the agent's config file for a kong parser (`fleet
// agent`). It is apart from agentcli so that the slim fleet-agent binary,
// which has its own parser, links no kong.
package agentkong

import (
	"os"

	"github.com/alecthomas/kong"

	"github.com/fleet-dev/fleet/agent/agentcli"
)

// BeforeResolve is for a kong BeforeResolve hook: it reads the config file
// named by --config (or $FLEET_AGENT_CONFIG) with agentcli.LoadConfig and
// adds it as a resolver, so that its keys fill the flags that neither the
// command line nor the environment gave: command line > environment > config
// file > default, as fleet-agent's own parser does.
func BeforeResolve(kctx *kong.Context) error {
	path := ""
	for _, f := range kctx.Flags() {
		if f.Name == "config" {
			path, _ = kctx.FlagValue(f).(string)
		}
	}
	cfg, err := agentcli.LoadConfig(path)
	if err != nil {
		return err
	}
	kctx.AddResolver(resolver{cfg})
	return nil
}

type resolver struct{ cfg *agentcli.Config }

func (resolver) Validate(*kong.Application) error { return nil }

func (r resolver) Resolve(_ *kong.Context, _ *kong.Path, f *kong.Flag) (any, error) {
	for _, e := range f.Envs {
		if os.Getenv(e) != "" {
			return nil, nil // the environment wins over the file
		}
	}
	return r.cfg.Typed(f.Name), nil
}
