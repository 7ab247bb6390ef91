package main

import (
	"context"
	"flag"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

var derivedEvents = flag.Int("derived-events", 200000, "events for BenchmarkDerivedBytesPerLogByte")

// dirBytes is the disk the files under dir take (allocated blocks).
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

// BenchmarkDerivedBytesPerLogByte writes a generated log through fleet
// server, waits until the read models and the time-travel index have taken
// it in, stops the server and reports the bytes each store takes on disk
// next to the log's: derived-bytes/log-byte must stay under 1.
//
//	go test ./cmd/fleet -run '^$' -bench DerivedBytes -benchtime 1x
func BenchmarkDerivedBytesPerLogByte(b *testing.B) {
	for range b.N {
		ctx := context.Background()
		dir := b.TempDir()
		cmd := &ServerCmd{Data: dir, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}
		rs, err := cmd.Start(ctx, &Globals{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		evs := fixtures.GenerateLog(11, fixtures.Options{Devices: 20, Events: *derivedEvents})
		for i := 0; i < len(evs); i += 1000 {
			if err := rs.Env.Store.AppendBatch(ctx, evs[i:min(i+1000, len(evs))]); err != nil {
				b.Fatal(err)
			}
		}
		last, _ := rs.Env.Store.LastSeq(ctx)
		eventstest.WaitFor(b, 5*time.Minute, "derived stores at the log's end", func() bool {
			code, body := healthz(b, rs.Env.HTTPAddr)
			return code == 200 && body["checkpoint"] == float64(last)
		})
		time.Sleep(time.Second) // the index follows on its own consumer
		rs.Stop()
		log := dirBytes(filepath.Join(dir, "jetstream"))
		proj := dirBytes(filepath.Join(dir, "projections"))
		tt := dirBytes(filepath.Join(dir, "timetravel"))
		for _, d := range []string{"projections", "timetravel"} {
			byExt := map[string]int64{}
			_ = filepath.WalkDir(filepath.Join(dir, d), func(p string, e fs.DirEntry, err error) error {
				if err == nil && !e.IsDir() {
					if info, err := e.Info(); err == nil {
						byExt[filepath.Ext(p)] += info.Size()
					}
				}
				return nil
			})
			b.Logf("%s: %v", d, byExt)
		}
		b.ReportMetric(float64(len(evs)), "events")
		b.ReportMetric(float64(log), "log-bytes")
		b.ReportMetric(float64(proj), "readmodel-bytes")
		b.ReportMetric(float64(tt), "index-bytes")
		b.ReportMetric(float64(proj+tt)/float64(log), "derived-bytes/log-byte")
	}
}
