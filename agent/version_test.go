package agent

import (
	"runtime"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestBuildSaysVersionRevisionAndPlatform: what the release script sets
// through the linker is what --version prints, with the platform.
func TestBuildSaysVersionRevisionAndPlatform(t *testing.T) {
	is := is.New(t)
	v, r := Version, Revision
	t.Cleanup(func() { Version, Revision = v, r })
	Version, Revision = "v1.2.3", "0123456789abcdef0123"
	b := Build()
	is.Equal(b.Version, "v1.2.3")
	is.Equal(b.Revision, "0123456789abcdef0123")
	is.True(strings.HasPrefix(b.Platform, runtime.GOOS+"/"+runtime.GOARCH))
	is.Equal(strings.Fields(b.String())[:2], []string{"v1.2.3", "(0123456789ab)"})
}
