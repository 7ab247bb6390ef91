package sim

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/fleet-dev/fleet/projections"
)

// What the simulator writes when a phase stalls (--debug-dir): the
// simulator process's goroutines, grouped by identical stack (10,000 agents
// have about ten goroutines each: one stack with a count is readable, 100,000
// are not), and for the devices that have not converged, what their agents
// say (connection, outbox, parked events, each resource's state) beside what
// the read model says.

// stallAfter is how long the figure a phase waits for (devices Ready,
// devices drained) may stay the same before the simulator writes a dump;
// once a phase, and again if it stays stalled as long again.
const stallAfter = 30 * time.Second

// stallWatch notices a phase that stopped moving.
type stallWatch struct {
	s      *sim
	phase  string
	last   int
	since  time.Time
	dumped int
}

func (s *sim) newStallWatch(phase string) *stallWatch {
	return &stallWatch{s: s, phase: phase, last: -1, since: time.Now()}
}

// observe records the phase's figure; model (may be nil) is the read model
// as last read. It writes a dump when the figure has not changed for
// stallAfter (and the simulator was given --debug-dir).
func (w *stallWatch) observe(n int, model []projections.Device) {
	now := time.Now()
	if n != w.last {
		w.last, w.since = n, now
		return
	}
	if w.s.cfg.DebugDir == "" || now.Sub(w.since) < stallAfter*time.Duration(w.dumped+1) || w.dumped >= 3 {
		return
	}
	w.dumped++
	path, err := w.s.writeStall(fmt.Sprintf("%s-%d", w.phase, w.dumped), n, now.Sub(w.since), model)
	if err != nil {
		w.s.log("stall dump: %v", err)
		return
	}
	w.s.log("%s stalled at %d for %s: goroutines and stuck devices written to %s", w.phase, n, now.Sub(w.since).Round(time.Second), path)
}

// writeStall writes the dump and returns its path.
func (s *sim) writeStall(name string, n int, stalled time.Duration, model []projections.Device) (string, error) {
	if err := os.MkdirAll(s.cfg.DebugDir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(s.cfg.DebugDir, "stall-"+name+".txt")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	fmt.Fprintf(bw, "phase %s stalled at %d for %s, %s\n\n", name, n, stalled.Round(time.Second), time.Now().UTC().Format(time.RFC3339))
	byID := map[string]projections.Device{}
	for _, d := range model {
		byID[d.Device] = d
	}
	stuck := 0
	for _, d := range s.devs {
		if d.h == nil {
			continue
		}
		a := d.h.Agent
		md, inModel := byID[d.id]
		_, ready := readyAt(md, s.gen, s.cfg.Resources)
		if ready && a.OutboxLen() == 0 {
			continue
		}
		stuck++
		if stuck > 200 {
			continue
		}
		fmt.Fprintf(bw, "%s connected=%v outbox=%d parked=%d generation=%d", d.id, d.nc.IsConnected(), a.OutboxLen(), a.Parked(), a.Generation())
		if inModel {
			fmt.Fprintf(bw, " model: generation=%d observed=%d", md.Generation, md.ObservedGeneration)
			for _, r := range md.Resources {
				fmt.Fprintf(bw, " %s=%s", r.ID, r.State)
			}
		}
		fmt.Fprint(bw, "\n  agent:")
		st := a.Status()
		ids := make([]string, 0, len(st))
		for id := range st {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			r := st[id]
			fmt.Fprintf(bw, " %s=%s(gen %d, attempts %d)", id, r.State, r.Generation, r.Attempts)
		}
		fmt.Fprintln(bw)
	}
	fmt.Fprintf(bw, "\n%d devices not converged (first 200 above)\n\nagents' log counts:\n", stuck)
	for _, c := range s.agentLog.snapshot() {
		fmt.Fprintf(bw, "%7d %s\n", c.Count, c.Message)
	}
	fmt.Fprintln(bw, "\ngoroutines of the simulator process (grouped by stack):")
	if err := pprof.Lookup("goroutine").WriteTo(bw, 1); err != nil {
		return "", err
	}
	return path, bw.Flush()
}
