package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
)

// doctor runs `fleet doctor -o json` against url and returns its report and
// exit code.
func doctor(t *testing.T, args ...string) (DoctorReport, int) {
	t.Helper()
	out, code := replayCLI(t, append([]string{"doctor", "-o", "json"}, args...)...)
	var rep DoctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	return rep, code
}

func finding(rep DoctorReport, check string) Finding {
	for _, f := range rep.Findings {
		if f.Check == check {
			return f
		}
	}
	return Finding{Check: check, Status: "missing"}
}

// startDoctorServer starts fleet server on data (and the HTTP API) and
// applies a manifest to dev.
func startDoctorServer(t *testing.T, data, dev string) *RunningServer {
	t.Helper()
	t.Setenv("FLEET_ACTOR", "ops")
	cmd := &ServerCmd{Data: data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Replicas: 1, HeartbeatTTL: 10 * time.Second}
	rs, err := cmd.Start(context.Background(), &Globals{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	if _, code := replayCLI(t, "apply", "-f", filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml"), "--device", dev, "--nats="+rs.Env.NATSURL); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	return rs
}

// runDoctorAgent runs an agent for dev on rs until the test ends.
func runDoctorAgent(t *testing.T, rs *RunningServer, dev string, opts ...agent.Option) *agent.Handle {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.Start(context.Background(), rs.Env.Conn, dev, append([]agent.Option{agent.WithLog(jsstore.NewLazy(rs.Env.Conn)), agent.WithRoot(t.TempDir()),
		agent.WithStateDir(t.TempDir()), agent.WithLogger(quiet), agent.WithHeartbeatInterval(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Stop() })
	return h
}

// TestDoctorHealthyServerPasses: a server with a converged device and its
// agent heartbeating: every check ok (auth off is a warning), exit 0, over
// NATS and with --http alike.
func TestDoctorHealthyServerPasses(t *testing.T) {
	is := is.New(t)
	rs := startDoctorServer(t, t.TempDir(), "pi-01")
	runDoctorAgent(t, rs, "pi-01")
	url := "--nats=" + rs.Env.NATSURL
	var rep DoctorReport
	var code int
	eventstest.WaitFor(t, 15*time.Second, "doctor to pass", func() bool {
		rep, code = doctor(t, url)
		return code == 0
	})
	is.True(rep.OK)
	for _, c := range []string{"server", "stream", "projections", "time travel", "disk", "jetstream", "devices stale", "devices failing", "clock skew", "parked events"} {
		f := finding(rep, c)
		is.Equal(f.Status, statusOK) // every check ran and passed
	}
	is.Equal(finding(rep, "auth").Status, statusWarn)
	is.True(strings.Contains(finding(rep, "devices stale").Detail, "1 devices, none stale"))

	rep, code = doctor(t, url, "--http", rs.Env.HTTPAddr)
	is.Equal(code, 0)
	is.Equal(finding(rep, "disk").Status, statusOK)

	out, code := replayCLI(t, "doctor", url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "no problems found"))
}

// TestDoctorFailsOnAStoppedProjectionService: the log is up but no
// projection service answers: doctor fails naming it and what to do.
func TestDoctorFailsOnAStoppedProjectionService(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	p, err := startProjections(context.Background(), env.Conn, env.JS, t.TempDir(), projections.DefaultDurable, time.Minute, nil)
	is.NoErr(err)
	url := "--nats=" + env.Server.URL()
	var rep DoctorReport
	eventstest.WaitFor(t, 15*time.Second, "projections to answer doctor", func() bool {
		rep, _ = doctor(t, url)
		return finding(rep, "projections").Status == statusOK // it answers once it has caught up
	})
	p.Stop()
	rep, code := doctor(t, url)
	is.Equal(code, 1)
	is.True(!rep.OK)
	f := finding(rep, "projections")
	is.Equal(f.Status, statusFail)
	is.True(strings.Contains(f.Detail, "no projection service answers"))
	is.True(strings.Contains(f.Action, "start the projection service"))
	is.Equal(finding(rep, "server").Status, statusOK)
}

// TestDoctorFailsOnAFullDataDisk: the data directory on a 96 MiB tmpfs,
// filled but for a few MiB: the server's disk check fails and doctor says
// so, with the numbers and what to do.
func TestDoctorFailsOnAFullDataDisk(t *testing.T) {
	is := is.New(t)
	data := filepath.Join(t.TempDir(), "data")
	is.NoErr(os.MkdirAll(data, 0o755))
	mountTmpfs(t, data, "96m")
	rs := startDoctorServer(t, data, "pi-01")
	runDoctorAgent(t, rs, "pi-01")
	url := "--nats=" + rs.Env.NATSURL
	eventstest.WaitFor(t, 15*time.Second, "doctor to pass before the disk fills", func() bool {
		_, code := doctor(t, url)
		return code == 0
	})
	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	is.NoErr(err)
	// the server stops on the full disk (its derived stores say what they
	// could not write: TestDiskFullServerStopsWithoutPanicAndSaysWhatItCouldNotWrite)
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break // no space left
		}
	}
	is.NoErr(f.Close())
	rep, code := doctor(t, url)
	is.Equal(code, 1)
	d := finding(rep, "disk")
	is.Equal(d.Status, statusFail)
	is.True(strings.Contains(d.Detail, "free of"))
	is.True(strings.Contains(d.Detail, data))
	is.True(strings.Contains(d.Action, "free space"))
}

// TestDoctorFailsOnASkewedClock: an agent whose wall clock is 2 h ahead
// reports ClockSkewDetected; doctor fails naming the device and the offset.
func TestDoctorFailsOnASkewedClock(t *testing.T) {
	is := is.New(t)
	rs := startDoctorServer(t, t.TempDir(), "skewed-01")
	runDoctorAgent(t, rs, "skewed-01", agent.WithClock(func() time.Time { return time.Now().Add(2 * time.Hour) }))
	url := "--nats=" + rs.Env.NATSURL
	var rep DoctorReport
	var code int
	eventstest.WaitFor(t, 15*time.Second, "doctor to see the skew", func() bool {
		rep, code = doctor(t, url)
		return finding(rep, "clock skew").Status == statusFail
	})
	is.Equal(code, 1)
	f := finding(rep, "clock skew")
	is.True(strings.Contains(f.Detail, "skewed-01"))
	is.True(strings.Contains(f.Detail, "ahead of"))
	is.True(strings.Contains(f.Action, "time sync"))
}

// TestDoctorWarnsOfFailingDevices: a device whose exec resource its agent
// may not run (Failed, so the device is Degraded) is listed by doctor as a
// warning naming the device, the resource and what to run next; the
// control plane is fine, so the exit stays 0. The converged device is not
// listed.
func TestDoctorWarnsOfFailingDevices(t *testing.T) {
	is := is.New(t)
	rs := startDoctorServer(t, t.TempDir(), "pi-01")
	runDoctorAgent(t, rs, "pi-01")
	m := filepath.Join(t.TempDir(), "exec.yaml")
	is.NoErr(os.WriteFile(m, []byte("resources:\n  - id: job\n    exec: {argv: [\"true\"]}\n"), 0o644))
	if _, code := replayCLI(t, "apply", "-f", m, "--device", "pi-02", "--nats="+rs.Env.NATSURL); code != 0 {
		t.Fatalf("apply: exit %d", code)
	}
	runDoctorAgent(t, rs, "pi-02") // exec not allowed: job Failed
	url := "--nats=" + rs.Env.NATSURL
	var rep DoctorReport
	var code int
	eventstest.WaitFor(t, 15*time.Second, "doctor to list pi-02 as failing", func() bool {
		rep, code = doctor(t, url)
		return finding(rep, "devices failing").Status == statusWarn && finding(rep, "devices stale").Status == statusOK
	})
	f := finding(rep, "devices failing")
	is.Equal(code, 0) // a warning: the control plane is fine
	is.True(rep.OK)
	is.Equal(f.Data, []any{"pi-02"}) // only the failing device
	is.True(strings.Contains(f.Detail, "1 of 2 devices"))
	is.True(strings.Contains(f.Detail, "job"))
	is.True(strings.Contains(f.Action, "fleet explain"))

	out, code := replayCLI(t, "doctor", url)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "devices failing"))
	is.True(strings.Contains(out, "pi-02"))
}
