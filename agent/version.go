package agent

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Revision is the VCS revision the binary was built from (set by the
// linker: -X github.com/fleet-dev/fleet/agent.Revision=...). Empty: taken
// from the build's own VCS stamp where Go recorded one.
var Revision = ""

// BuildInfo is what a binary says about itself: `fleet version`,
// `fleet-agent --version`.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"` // GOOS/GOARCH, with GOARM on 32-bit ARM
}

// Build returns this binary's build information: Version and Revision as the
// linker set them, else the VCS stamp `go build` records in a checkout.
func Build() BuildInfo {
	b := BuildInfo{Version: Version, Revision: Revision, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && b.Revision == "":
				b.Revision = s.Value
			case s.Key == "vcs.modified" && Revision == "":
				b.Modified = s.Value == "true"
			case s.Key == "GOARM":
				b.Platform += "/v" + s.Value
			}
		}
	}
	return b
}

// String is the one line `--version` prints: "dev (3f2a9c1e0b7d, modified) go1.26.8 linux/arm/v7".
func (b BuildInfo) String() string {
	rev := b.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		rev = "unknown revision"
	}
	if b.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (%s) %s %s", b.Version, rev, b.GoVersion, b.Platform)
}
