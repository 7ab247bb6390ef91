package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fixtures"
)

// TestReplayAndExportEndOnAMessageDamagedInsideItsBody: the log of
// TestMessageDamagedInsideItsBodyIsReportedAsAStall (64 bytes flipped at
// the block's exact middle, the server still counting 2,000 messages).
// 'fleet replay' and 'fleet export' used to wait for ever; now each ends,
// exits 1 and names the sequence the log cannot give and what to do
// ('--from-seq'), and 'fleet replay --from-seq' past it reads the rest.
func TestReplayAndExportEndOnAMessageDamagedInsideItsBody(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	old := jsstore.ReadStallAfter
	jsstore.ReadStallAfter = 300 * time.Millisecond
	defer func() { jsstore.ReadStallAfter = old }()
	dir := t.TempDir()
	cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	is.NoErr(rs.Env.Store.AppendBatch(ctx, fixtures.GenerateLog(4, fixtures.Options{Devices: 3, Events: 2000})))
	rs.Stop()
	flipBlockMiddle(t, dir)
	rs, err = cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	url := "--nats=" + rs.Env.NATSURL

	// cli runs the command, failing the test if it does not end
	cli := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			stderr = captureStderr(t, func() { stdout, code = replayCLI(t, args...) })
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("fleet %s did not end on the damaged log", strings.Join(args, " "))
		}
		return stdout, stderr, code
	}
	for _, args := range [][]string{{"replay", "-o", "json"}, {"export"}} {
		out, errOut, code := cli(append(args, url)...)
		t.Logf("fleet %s: exit %d, %d lines, stderr: %s", args[0], code, strings.Count(out, "\n"), strings.TrimSpace(errOut))
		is.Equal(code, 1)
		is.True(strings.Contains(errOut, "sequence 1001 cannot be read"))
		is.True(strings.Contains(errOut, "may be damaged"))
		is.True(strings.Contains(errOut, "--from-seq 1002"))
		if args[0] == "replay" {
			var evs []json.RawMessage
			is.NoErr(json.Unmarshal([]byte(out), &evs))
			is.Equal(len(evs), 1999) // replay reports the damage and prints the rest (1 to 1000, 1002 to 2000)
		}
		if args[0] == "export" {
			is.Equal(strings.Count(out, "\n"), 1000) // the events before the damage are written out, as the error counts them
		}
	}
	out, errOut, code := cli("replay", "-o", "json", "--from-seq", "1002", url)
	is.Equal(code, 0) // past the damage, to the end
	var evs []json.RawMessage
	is.NoErr(json.Unmarshal([]byte(out), &evs))
	is.Equal(len(evs), 999) // 1002 to 2000
	is.Equal(strings.TrimSpace(errOut), "")
}
