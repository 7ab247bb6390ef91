package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestExportJSON: `fleet export -o json` writes one JSON array holding the
// same envelopes as the NDJSON export, in order; an empty export is [].
func TestExportJSON(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	t.Setenv("FLEET_ACTOR", "ops")
	url := "--nats=" + env.Server.URL()
	out, code := replayCLI(t, "export", "-o", "json", "--device", "pi-01", url)
	is.Equal(code, 0)
	is.Equal(strings.TrimSpace(out), "[]")
	for _, d := range []string{"pi-01", "pi-02"} {
		_, code = replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", d, url)
		is.Equal(code, 0)
	}
	nd, code := replayCLI(t, "export", url)
	is.Equal(code, 0)
	out, code = replayCLI(t, "export", "-o", "json", url)
	is.Equal(code, 0)
	var arr []json.RawMessage
	is.NoErr(json.Unmarshal([]byte(out), &arr))
	lines := strings.Split(strings.TrimSpace(nd), "\n")
	is.Equal(len(arr), len(lines))
	for i := range arr {
		is.Equal(string(arr[i]), lines[i])
	}
}
