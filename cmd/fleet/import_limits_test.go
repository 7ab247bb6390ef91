package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay"
)

// writeExport writes evs as an export file and returns its path.
func writeExport(t *testing.T, evs []events.Event) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "export.ndjson")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, e := range evs {
		if err := replay.WriteEvent(f, e); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestImportWritesNothingWhenOneEventIsTooLargeOrInvalid imports an export
// of 2,587 events into empty servers. In one, event 2,400 is a
// ReconcileAttempted whose JSON is just under 1 MiB: it passes the file's
// own check (events are at most 1 MiB) but not the stream's max_msg_size
// once its headers are counted. In another, event 2,300 is a ManifestApplied
// whose manifest 'fleet apply' would refuse (a relative file path). Each is
// refused naming its line, and the stream holds nothing: the check runs
// against the target's limits before the first batch is written. With
// --verify the invalid manifest is imported and listed.
func TestImportWritesNothingWhenOneEventIsTooLargeOrInvalid(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	base := fixtures.GenerateLog(16, fixtures.Options{Devices: 4, Events: 2587})
	is.Equal(len(base), 2587)

	// just under 1 MiB of JSON: valid on its own, too large with its headers
	big := append([]events.Event(nil), base...)
	idx := -1
	for i := 2400; i < len(big); i++ {
		if big[i].Type == events.TypeReconcileAttempted {
			idx = i
			break
		}
	}
	is.True(idx > 0)
	var p events.ReconcileAttempted
	is.NoErr(json.Unmarshal(big[idx].Data, &p))
	enc, err := events.Encode(big[idx])
	is.NoErr(err)
	p.Output = strings.Repeat("x", (1<<20)-len(enc)-64)
	big[idx].Data, err = json.Marshal(p)
	is.NoErr(err)
	enc, err = events.Encode(big[idx])
	is.NoErr(err)
	is.True(len(enc) < 1<<20) // the file check alone lets it through
	size, err := jsstore.MsgSize(big[idx])
	is.NoErr(err)
	is.True(size > 1<<20) // the stream does not

	dst := eventstest.Start(t, true)
	out, code := replayCLI(t, "import", writeExport(t, big), "--nats="+dst.Server.URL())
	is.True(code != 0)
	_ = out
	last, err := dst.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(last, uint64(0)) // nothing written

	// a manifest fleet apply would refuse
	bad := append([]events.Event(nil), base...)
	mi := -1
	for i := 2300; i < len(bad); i++ {
		if bad[i].Type == events.TypeManifestApplied {
			mi = i
			break
		}
	}
	if mi < 0 { // the generator's last manifest is earlier: move one there
		for i := len(bad) - 1; i >= 0; i-- {
			if bad[i].Type == events.TypeManifestApplied {
				mi = i
				break
			}
		}
	}
	is.True(mi > 1000) // after the first batch of the import
	var ma events.ManifestApplied
	is.NoErr(json.Unmarshal(bad[mi].Data, &ma))
	ma.Manifest.Resources = append(ma.Manifest.Resources, events.Resource{ID: "rel",
		File: &events.FileSpec{Path: "etc/relative", Content: "x"}})
	bad[mi].Data, err = json.Marshal(ma)
	is.NoErr(err)
	file := writeExport(t, bad)
	dst2 := eventstest.Start(t, true)
	_, code = replayCLI(t, "import", file, "--nats="+dst2.Server.URL())
	is.Equal(code, 2)
	last, err = dst2.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(last, uint64(0)) // nothing written

	// --verify imports it as it is and lists it
	out, code = replayCLI(t, "import", file, "--verify", "-o", "json", "--nats="+dst2.Server.URL())
	is.Equal(code, 0)
	var res struct {
		Events  int      `json:"events"`
		Flagged []string `json:"invalidManifests"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &res))
	is.Equal(res.Events, len(bad))
	is.Equal(len(res.Flagged), 1)
	is.True(strings.Contains(res.Flagged[0], "etc/relative") || strings.Contains(res.Flagged[0], "path"))
	last, err = dst2.Store.LastSeq(ctx)
	is.NoErr(err)
	is.Equal(last, uint64(len(bad)))
}
