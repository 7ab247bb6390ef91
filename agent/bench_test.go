package agent_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fsm"
)

// benchConverge measures ManifestApplied to all n file resources Ready.
// First, once, a new device: every file is created. Then each iteration
// applies a generation that changes every file. Beside them, in the same
// run, the floor the disk sets, by hand, with no agent, no events and no
// store (16 files at a time, then one fsync per directory):
//
//   - raw-files: n durable replaces the usual way: temp file, write, fsync,
//     rename;
//   - raw-spares: the way the agent's file reconciler does it when spares
//     are ready (see agent/reconcile/spares.go): write into an empty file
//     made ahead of time, fsync, swap into place with RENAME_EXCHANGE.
//
// The agent makes its spares, and deletes the old versions, in the
// background after a generation converged; each iteration waits for that
// (reported as spares-refill-s, not timed) so that every measurement,
// agent's and by hand, starts on a quiet disk.
//
//	go test -run '^$' -bench 'Converge' -benchtime 3x ./agent/
func benchConverge(b *testing.B, n int) {
	env := eventstest.Start(b, true)
	r := &rig{env: env, root: b.TempDir(), state: b.TempDir(), rec: &recorder{}}
	r.nc = connect(b, env)
	recs := reconcile.Defaults(reconcile.Options{Root: r.root, StateDir: r.state})
	file := recs[0].(*reconcile.File)
	if err := file.KeepSpares(filepath.Join(r.state, "spares")); err != nil { // as agent.New does
		b.Fatal(err)
	}
	r.start(b, "bench-01", agent.WithDriftInterval(time.Hour), agent.WithOnEvent(func([]events.Event) {}), agent.WithReconcilers(recs...))
	converge := func(v string) time.Duration {
		t0 := time.Now()
		gen := apply(b, env, "bench-01", manyFiles(n, v)...)
		for !allReady(r.h.Agent, n, gen) {
			time.Sleep(time.Millisecond)
		}
		return time.Since(t0)
	}
	rawRoot, spareDir := b.TempDir(), b.TempDir()
	firstDur := converge("first")
	file.WaitSpares()
	t0 := time.Now()
	rawFiles(b, rawRoot, manyFiles(n, "first"))
	rawFirst := time.Since(t0)

	var convergeDur, rawDur, rawSpareDur, refillDur time.Duration
	used0, missed0 := file.SparesUsed()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		convergeDur += converge(fmt.Sprintf("v%d", i))
		b.StopTimer()
		t0 := time.Now()
		file.WaitSpares()
		refillDur += time.Since(t0)
		t0 = time.Now()
		rawFiles(b, rawRoot, manyFiles(n, fmt.Sprintf("v%d", i)))
		rawDur += time.Since(t0)
		rawSpareDur += rawSpares(b, rawRoot, spareDir, manyFiles(n, fmt.Sprintf("w%d", i)))
		b.StartTimer()
	}
	b.StopTimer()
	used, missed := file.SparesUsed()
	b.ReportMetric(float64(n*b.N)/convergeDur.Seconds(), "resources/s")
	b.ReportMetric(convergeDur.Seconds()/float64(b.N), "converge-s")
	b.ReportMetric(rawDur.Seconds()/float64(b.N), "raw-files-s")
	b.ReportMetric(rawSpareDur.Seconds()/float64(b.N), "raw-spares-s")
	b.ReportMetric(refillDur.Seconds()/float64(b.N), "spares-refill-s")
	b.ReportMetric(float64(missed-missed0)/float64(max(1, used-used0+missed-missed0)), "spare-misses")
	b.ReportMetric(firstDur.Seconds(), "new-device-s")
	b.ReportMetric(rawFirst.Seconds(), "raw-new-files-s")
}

// rawFiles replaces the files of rs under root durably, by hand: the floor
// of what any agent can do on this disk.
func rawFiles(b *testing.B, root string, rs []events.Resource) {
	dirs := map[string]bool{}
	for _, r := range rs {
		dir := filepath.Join(root, filepath.Dir(r.File.Path))
		if !dirs[dir] {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			dirs[dir] = true
		}
	}
	inParallel(b, len(rs), func(i int) error {
		full := filepath.Join(root, rs[i].File.Path)
		tmp := full + ".tmp"
		err := writeSynced(tmp, os.O_CREATE|os.O_EXCL, rs[i].File.Content)
		if err == nil {
			err = os.Rename(tmp, full)
		}
		return err
	})
	syncDirs(b, dirs)
}

// rawSpares replaces the (existing) files of rs under root durably, by hand,
// the way the agent's spares do: n empty files are made first (not timed),
// then, timed, each is written, fsynced and swapped into place with
// RENAME_EXCHANGE, the old version moved aside; then one fsync per
// directory. The old versions are deleted after (not timed).
func rawSpares(b *testing.B, root, spareDir string, rs []events.Resource) time.Duration {
	fresh, old := filepath.Join(spareDir, "fresh"), filepath.Join(spareDir, "old")
	for _, d := range []string{fresh, old} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for i := range rs {
		f, err := os.OpenFile(filepath.Join(fresh, strconv.Itoa(i)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	dirs := map[string]bool{}
	for _, r := range rs {
		dirs[filepath.Join(root, filepath.Dir(r.File.Path))] = true
	}
	t0 := time.Now()
	inParallel(b, len(rs), func(i int) error {
		sp := filepath.Join(fresh, strconv.Itoa(i))
		err := writeSynced(sp, 0, rs[i].File.Content)
		if err == nil {
			err = unix.Renameat2(unix.AT_FDCWD, sp, unix.AT_FDCWD, filepath.Join(root, rs[i].File.Path), unix.RENAME_EXCHANGE)
		}
		if err == nil {
			err = os.Rename(sp, filepath.Join(old, strconv.Itoa(i)))
		}
		return err
	})
	syncDirs(b, dirs)
	took := time.Since(t0)
	if err := os.RemoveAll(old); err != nil {
		b.Fatal(err)
	}
	return took
}

// writeSynced opens path for writing (with the extra open flags), writes
// content, fsyncs and closes it.
func writeSynced(path string, flags int, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|flags, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDirs fsyncs each directory of dirs.
func syncDirs(b *testing.B, dirs map[string]bool) {
	for dir := range dirs {
		d, err := os.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}

// inParallel calls f(0) ... f(n-1) on 16 goroutines, as the file
// reconciler does, and fails b with an error any of them returned.
func inParallel(b *testing.B, n int, f func(i int) error) {
	var wg sync.WaitGroup
	next := make(chan int)
	var failed atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}

func BenchmarkConverge1(b *testing.B)    { benchConverge(b, 1) }
func BenchmarkConverge100(b *testing.B)  { benchConverge(b, 100) }
func BenchmarkConverge1000(b *testing.B) { benchConverge(b, 1000) }

var idleSettle = flag.Duration("idle-settle", time.Second, "how long BenchmarkIdleAgent waits after convergence before it samples")

// BenchmarkIdleAgent runs fleet-agent as a process with a 3-resource
// manifest, waits until it is converged, then samples its resident memory
// (/proc/PID/status VmRSS) and its CPU use over 5 s (/proc/PID/stat utime +
// stime) with the default drift interval and heartbeat. The binary is built
// as it ships: static, stripped.
//
// Warm: the binary was just written by go build, so all of it sits in the
// page cache and the kernel maps it into the process in large pieces. Cold:
// the binary's pages are dropped from the page cache before the start
// (posix_fadvise DONTNEED), as on a device after a reboot, so only what the
// agent reads (plus readahead) is mapped.
func BenchmarkIdleAgent(b *testing.B) {
	b.Run("warm", func(b *testing.B) { idleAgent(b, false) })
	b.Run("cold", func(b *testing.B) { idleAgent(b, true) })
}

func idleAgent(b *testing.B, cold bool) {
	bin := fleetAgentBinary(b)
	if cold {
		dropPageCache(b, bin)
	}
	env := eventstest.Start(b, true)
	root, state := b.TempDir(), b.TempDir()
	apply(b, env, "idle-01", threeFiles("v1")...)
	c := exec.Command(bin, "--nats", env.Server.URL(), "--device", "idle-01", "--root", root, "--state", state)
	if err := c.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Process.Signal(syscall.SIGTERM); _ = c.Wait() }()
	waitFor(b, 20*time.Second, "3 Ready", func() bool {
		st := lastStates(deviceLog(b, env, "idle-01"))
		return len(st) == 3 && st["motd"] == fsm.Ready && st["app-conf"] == fsm.Ready && st["banner"] == fsm.Ready
	})
	time.Sleep(*idleSettle) // let start-up settle
	pid := c.Process.Pid
	var rssMB, anonMB, fileMB, cpuPct float64
	for i := 0; i < b.N; i++ {
		t0, c0 := time.Now(), cpuTicks(b, pid)
		time.Sleep(5 * time.Second)
		t1, c1 := time.Now(), cpuTicks(b, pid)
		cpuPct = float64(c1-c0) / 100 / t1.Sub(t0).Seconds() * 100 // USER_HZ is 100 on Linux
		rssMB, anonMB, fileMB = rss(b, pid, "VmRSS:"), rss(b, pid, "RssAnon:"), rss(b, pid, "RssFile:")
	}
	saveProcFiles(b, pid, map[bool]string{false: "idle-warm", true: "idle-cold"}[cold])
	b.ReportMetric(rssMB, "RSS-MB")
	// RSS = anonymous memory (heap, stacks, Pebble's buffers) + file pages
	// mapped from the binary (page cache, shared and reclaimable; a kernel
	// with large folios maps them in 2 MB pieces, so most of the binary counts).
	b.ReportMetric(anonMB, "anon-MB")
	b.ReportMetric(fileMB, "file-MB")
	b.ReportMetric(cpuPct, "CPU-%")
}

// dropPageCache writes back and drops the page cache of file, so the next
// process that maps it reads it from disk as after a reboot.
func dropPageCache(b *testing.B, file string) {
	f, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		b.Fatal(err)
	}
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime is field 14, 12th after the comm
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// rss reads one kB field of /proc/PID/status, in MB.
func rss(b *testing.B, pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field) {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
