package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
)

// fillDisk writes a filler at path until its file system is full, then
// gives back keep bytes; it returns the filler's path.
func fillDisk(t *testing.T, dir string, keep int64) string {
	t.Helper()
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break // no space left
		}
	}
	if keep > 0 {
		st, _ := f.Stat()
		_ = f.Truncate(max(st.Size()-keep, 0))
	}
	if err := f.Close(); err != nil && !strings.Contains(err.Error(), "no space") {
		t.Fatal(err)
	}
	return filler
}

// TestDiskFullDerivedStoresStopAndCatchUpWithoutRestart puts the read models
// (DATA/projections) and the time-travel index (DATA/timetravel) on tmpfs
// of their own, the log elsewhere, and leaves them 2 MiB free. Events keep
// coming: neither store takes them in (their checkpoints do not move, no
// panic, no exit), /healthz fails naming each store, its path, the free
// space and what to do, and `fleet doctor` shows it. Once space is freed
// both catch up without a restart, and the read models equal a clean
// rebuild from the log, key for key.
func TestDiskFullDerivedStoresStopAndCatchUpWithoutRestart(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	old := projections.StallAfter
	projections.StallAfter = time.Second // a full store is not reported as a damaged message
	t.Cleanup(func() { projections.StallAfter = old })
	dir := t.TempDir()
	models, index := filepath.Join(dir, "projections"), filepath.Join(dir, "timetravel")
	mountTmpfs(t, models, "24m")
	mountTmpfs(t, index, "24m")
	rs := startDoctorServer(t, dir, "pi-01")
	url := "--nats=" + rs.Env.NATSURL
	var body map[string]any
	var code int
	st0, err := rs.Env.Store.State(ctx)
	is.NoErr(err)
	cp0 := fmt.Sprint(st0.LastSeq)
	eventstest.WaitFor(t, 15*time.Second, "/healthz ok, the read models at the log's end", func() bool {
		code, body = healthz(t, rs.Env.HTTPAddr)
		return code == 200 && fmt.Sprint(body["checkpoint"]) == cp0
	})

	fillers := []string{fillDisk(t, models, 2<<20), fillDisk(t, index, 2<<20)}
	evs := fixtures.GenerateLog(16, fixtures.Options{Devices: 5, Events: 3000})
	for i := 0; i < len(evs); i += 500 {
		is.NoErr(rs.Env.Store.AppendBatch(ctx, evs[i:min(i+500, len(evs))])) // the log is on another disk
	}
	eventstest.WaitFor(t, 15*time.Second, "/healthz to fail naming both stores", func() bool {
		code, body = healthz(t, rs.Env.HTTPAddr)
		all := fmt.Sprint(body["checks"])
		return code == http.StatusServiceUnavailable && strings.Contains(all, models) && strings.Contains(all, index)
	})
	fullAt := time.Now()
	eventstest.WaitFor(t, 15*time.Second, "past StallAfter with the store still full", func() bool {
		code, body = healthz(t, rs.Env.HTTPAddr)
		return time.Since(fullAt) > 2*projections.StallAfter
	})
	is.Equal(code, http.StatusServiceUnavailable)
	reason := fmt.Sprint(body["reason"])
	t.Logf("reason: %s", reason)
	is.True(strings.HasPrefix(reason, "projections: the read models store "+models+"/models-"))
	is.True(strings.Contains(reason, "MiB free of"))
	is.True(strings.Contains(fmt.Sprint(body["checks"]), "the time-travel index store "+index))
	is.True(strings.Contains(fmt.Sprint(body["action"]), "free space"))
	is.True(strings.Contains(fmt.Sprint(body["action"]), "--data"))
	is.Equal(fmt.Sprint(body["checkpoint"]), cp0) // nothing taken in, nothing acknowledged
	rep, code := doctor(t, url)
	is.Equal(code, 1)
	f := finding(rep, "derived stores")
	is.Equal(f.Status, statusFail)
	is.True(strings.Contains(f.Detail, models) && strings.Contains(f.Detail, index))
	p := finding(rep, "projections") // the read models' own check says the same, never "damaged"
	is.Equal(p.Status, statusFail)
	is.True(strings.Contains(p.Detail, "out of disk space"))
	is.True(strings.Contains(f.Action, "free space"))
	t.Logf("doctor: %s", f.Detail)

	// space returns: both catch up by themselves
	for _, p := range fillers {
		is.NoErr(os.Remove(p))
	}
	st, err := rs.Env.Store.State(ctx)
	is.NoErr(err)
	last := st.LastSeq
	eventstest.WaitFor(t, 30*time.Second, "/healthz ok and both stores at the log's end", func() bool {
		rep, _ = doctor(t, url)
		return finding(rep, "derived stores").Status == statusOK &&
			strings.Contains(finding(rep, "projections").Detail, fmt.Sprintf("checkpoint %d, 0 events behind", last)) &&
			strings.Contains(finding(rep, "time travel").Detail, fmt.Sprintf("index at %d, 0 events behind", last))
	})
	code, body = healthz(t, rs.Env.HTTPAddr)
	is.Equal(code, 200)
	t.Logf("doctor after: %+v", rep.Findings)

	// equal to a clean rebuild from the log
	fresh, err := projections.Open(t.TempDir(), projections.WithDurable("diskfull-rebuild"))
	is.NoErr(err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fresh.Run(rctx, rs.Env.Store) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	is.NoErr(fresh.WaitFor(wctx, last))
	wcancel()
	cancel()
	is.NoErr(<-done)
	want, err := fresh.Dump()
	is.NoErr(err)
	is.NoErr(fresh.Close())
	rs.Stop()
	is.NoErr(rs.StopError())
	live, err := projections.Open(models)
	is.NoErr(err)
	got, err := live.Dump()
	is.NoErr(err)
	is.NoErr(live.Close())
	is.Equal(len(got), len(want))
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("read models differ from a clean rebuild at %q", k)
		}
	}
}
