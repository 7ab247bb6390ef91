package agent_test

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fsm"
)

var probeWindow = flag.Duration("probe-window", 30*time.Second, "how long BenchmarkProbes samples the agent's CPU")

// BenchmarkProbes runs fleet-agent as a process with 50 containers (the
// stand-in podman on PATH) and samples its resident memory and CPU over
// -probe-window once they are Ready: "probes" gives each container a tcp
// readiness and an http liveness probe every 10 s against real local
// servers (100 probe runs per 10 s); "none" is the same manifest with no
// probes. Both read each container's own health (podman inspect) every
// 10 s. CPU-% is the agent's own (utime+stime); children-CPU-% is the
// podman processes it ran and waited for (cutime+cstime).
//
//	go test -run '^$' -bench Probes -benchtime 1x ./agent/
func BenchmarkProbes(b *testing.B) {
	b.Run("none", func(b *testing.B) { probesAgent(b, false) })
	b.Run("probes", func(b *testing.B) { probesAgent(b, true) })
}

func probesAgent(b *testing.B, probes bool) {
	bin := fleetAgentBinary(b)
	standinsOnce.Do(func() {
		standinsDir, standinsErr = os.MkdirTemp("", "fleet-agent-standins-")
		if standinsErr == nil {
			standinsErr = reconciletest.BuildStandins(standinsDir)
		}
	})
	if standinsErr != nil {
		b.Fatal(standinsErr)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	var rs []events.Resource
	for i := range 50 {
		var h *events.HealthSpec
		if probes {
			h = &events.HealthSpec{Readiness: &events.Probe{TCP: &events.TCPProbe{Port: port}},
				Liveness: &events.Probe{HTTP: &events.HTTPProbe{URL: srv.URL + "/healthz"}}}
		}
		rs = append(rs, containerWith(fmt.Sprintf("c%02d", i), h))
	}
	env := eventstest.Start(b, true)
	root, state, standinState := b.TempDir(), b.TempDir(), b.TempDir()
	apply(b, env, "probe-01", rs...)
	c := exec.Command(bin, "--nats", env.Server.URL(), "--device", "probe-01", "--root", root, "--state", state)
	c.Env = append(os.Environ(), "PATH="+standinsDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FLEET_STANDIN_STATE="+standinState)
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Process.Signal(syscall.SIGTERM); _ = c.Wait() }()
	waitFor(b, 60*time.Second, "50 Ready", func() bool {
		st := lastStates(deviceLog(b, env, "probe-01"))
		n := 0
		for _, s := range st {
			if s == fsm.Ready {
				n++
			}
		}
		return n == 50
	})
	time.Sleep(*idleSettle)
	pid := c.Process.Pid
	before := len(deviceLog(b, env, "probe-01"))
	var rssMB, anonMB, fileMB, cpuPct, childPct float64
	for i := 0; i < b.N; i++ {
		t0, c0, k0 := time.Now(), cpuTicks(b, pid), childTicks(b, pid)
		time.Sleep(*probeWindow)
		t1, c1, k1 := time.Now(), cpuTicks(b, pid), childTicks(b, pid)
		cpuPct = float64(c1-c0) / 100 / t1.Sub(t0).Seconds() * 100 // USER_HZ is 100 on Linux
		childPct = float64(k1-k0) / 100 / t1.Sub(t0).Seconds() * 100
		rssMB, anonMB, fileMB = rss(b, pid, "VmRSS:"), rss(b, pid, "RssAnon:"), rss(b, pid, "RssFile:")
	}
	saveProcFiles(b, pid, "probes-"+map[bool]string{false: "none", true: "probes"}[probes])
	b.ReportMetric(rssMB, "RSS-MB")
	b.ReportMetric(anonMB, "anon-MB")
	b.ReportMetric(fileMB, "file-MB")
	b.ReportMetric(cpuPct, "CPU-%")
	b.ReportMetric(childPct, "children-CPU-%")
	b.ReportMetric(float64(len(deviceLog(b, env, "probe-01"))-before), "events")
}

// childTicks is cutime + cstime of /proc/PID/stat.
func childTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[13], 10, 64) // cutime is field 16
	st, _ := strconv.ParseInt(f[14], 10, 64)
	return ut + st
}

var procDump = flag.String("proc-dump", "", "directory where the agent benchmarks copy the agent's /proc/PID/smaps and status before it stops")

// saveProcFiles copies the agent's smaps and status into -proc-dump, to see
// which mappings the RSS is (go test ./agent/ -bench Probes -args -proc-dump=/tmp/x).
func saveProcFiles(b *testing.B, pid int, name string) {
	if *procDump == "" {
		return
	}
	for _, f := range []string{"smaps", "status"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(*procDump, name+"."+f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
