package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// TestRetentionIsTheOperatorsChoiceAndTimeTravelSaysWhatIsGone runs fleet
// server with --retention-max-bytes 8MiB and writes more than that: the
// oldest events leave the log (the stream's first sequence moves on), the
// read models, which took them in, stay healthy, and fleet inspect about a
// time before the log's first event says the log no longer has it. Bad
// retention flags are refused as bad usage.
func TestRetentionIsTheOperatorsChoiceAndTimeTravelSaysWhatIsGone(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	for _, bad := range [][]string{{"--retention-max-bytes", "12 parsecs"}, {"--retention-max-bytes", "1MiB"},
		{"--retention-max-age", "soon"}, {"--retention-max-age", "5m"}} {
		stderr := captureStderr(t, func() {
			_, code := replayCLI(t, append([]string{"server", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--http", ""}, bad...)...)
			is.Equal(code, 2)
		})
		is.True(strings.Contains(stderr, bad[0]))
	}

	cmd := &ServerCmd{Data: t.TempDir(), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1,
		HeartbeatTTL: 10 * time.Second, ServerLimits: ServerLimits{RetentionMaxBytes: "8MiB", RetentionMaxAge: "365d"}}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer func() { rs.Stop() }()
	stream, err := rs.Env.JS.Stream(ctx, events.Stream)
	is.NoErr(err)
	is.Equal(stream.CachedInfo().Config.MaxBytes, int64(8<<20))
	is.Equal(stream.CachedInfo().Config.MaxAge, 365*24*time.Hour)

	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 4, Events: 40000})
	for i := 0; i < len(evs); i += 1000 {
		is.NoErr(rs.Env.Store.AppendBatch(ctx, evs[i:min(i+1000, len(evs))]))
	}
	info, err := stream.Info(ctx)
	is.NoErr(err)
	is.True(info.State.FirstSeq > 1)           // the oldest events left the log
	is.True(info.State.Bytes <= uint64(8<<20)) // within the operator's limit
	last := info.State.LastSeq
	eventstest.WaitFor(t, 20*time.Second, "read models at the log's end, healthy", func() bool {
		code, body := healthz(t, rs.Env.HTTPAddr)
		return code == 200 && body["checkpoint"] == float64(last)
	})

	url := "--nats=" + rs.Env.NATSURL
	dev, at := evs[0].Device, evs[0].At
	var out string
	stderr := captureStderr(t, func() {
		out, _ = replayCLI(t, "inspect", dev, "--at", at.Add(time.Second).Format(time.RFC3339Nano), url)
	})
	_ = out
	is.True(strings.Contains(stderr, "the log no longer has what came before"))
	is.True(strings.Contains(stderr, "fleet export"))
	// a time the log still covers gets no such note
	stderr = captureStderr(t, func() { replayCLI(t, "inspect", dev, url) })
	is.True(!strings.Contains(stderr, "no longer has"))
}
