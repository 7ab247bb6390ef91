package sim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// manifest is generation gen of every device: K files whose content names
// the generation, so that each generation changes every file.
func (s *sim) manifest(dev string, gen int64) events.Manifest {
	m := events.Manifest{}
	for i := 0; i < s.cfg.Resources; i++ {
		m.Resources = append(m.Resources, events.Resource{ID: fmt.Sprintf("f%d", i), Kind: events.KindFile,
			File: &events.FileSpec{Path: fmt.Sprintf("/etc/sim/f%d.conf", i), Content: content(dev, gen, i), Mode: "0644"}})
	}
	return m
}

func content(dev string, gen int64, i int) string {
	return fmt.Sprintf("device %s generation %d file %d\n", dev, gen, i)
}

func (s *sim) run(ctx context.Context, rep *Report) error {
	initial, err := s.rollout(ctx, false)
	rep.Initial = initial
	if err != nil {
		return err
	}
	if err := sleep(ctx, s.cfg.Settle); err != nil {
		return err
	}
	w, err := s.beginWindow(ctx)
	if err != nil {
		return err
	}
	switch s.cfg.Scenario {
	case Idle:
		err = sleep(ctx, s.cfg.For)
	case Rollout:
		rep.Rollout, err = s.rollout(ctx, true)
	case Reconnect:
		rep.Reconnect, err = s.reconnect(ctx)
	case Drift:
		rep.Drift, err = s.drift(ctx)
	}
	if werr := s.endWindow(ctx, w, rep); err == nil {
		err = werr
	}
	if err == nil && rep.Rollout != nil {
		rep.Floor, err = s.floor(ctx, rep.Rollout)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// rollout appends the next generation to every device through the events
// apply path (compare-and-set, as `fleet apply` does) and waits until the
// read model shows every device Ready on it. record makes the agents note
// their batch shapes for the floor.
func (s *sim) rollout(ctx context.Context, record bool) (*ReadyStats, error) {
	gen := s.gen + 1
	before, err := s.st.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range s.devs {
		d.takeBatches()
		d.record.Store(record)
	}
	stored := make([]time.Time, len(s.devs))
	start := time.Now()
	with := "events.ApplyMany"
	if s.cfg.ApplyEach {
		with = "events.Apply"
		err = parallel(len(s.devs), 64, func(i int) error {
			d := s.devs[i]
			actx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := events.Apply(actx, s.st, s.clock, d.id, s.manifest(d.id, gen), "user:fleet-sim", nil); err != nil {
				return fmt.Errorf("apply generation %d to %s: %w", gen, d.id, err)
			}
			stored[i] = time.Now()
			return nil
		})
	} else {
		for from := 0; from < len(s.devs) && err == nil; from += events.ManyBatch {
			to := min(from+events.ManyBatch, len(s.devs))
			items := make([]events.ApplyItem, 0, to-from)
			for _, d := range s.devs[from:to] {
				items = append(items, events.ApplyItem{Device: d.id, Manifest: s.manifest(d.id, gen)})
			}
			// A device's manifest is stored somewhere between the group's
			// send and its last answer (agents are often Ready before the
			// last answer): its latency counts from the send, an upper bound.
			sent := time.Now()
			actx, cancel := context.WithTimeout(ctx, time.Minute)
			if _, err = events.ApplyMany(actx, s.st, s.clock, items, "user:fleet-sim", nil); err != nil {
				err = fmt.Errorf("apply generation %d to devices %d to %d: %w", gen, from, to-1, err)
			}
			cancel()
			for i := from; i < to; i++ {
				stored[i] = sent
			}
		}
	}
	applied := time.Since(start)
	if err != nil {
		return nil, err
	}
	s.applied += int64(len(s.devs))
	s.gen = gen
	s.log("generation %d appended to %d devices in %s; waiting for the read model", gen, len(s.devs), applied.Round(time.Millisecond))
	rs := &ReadyStats{Generation: gen, ApplyMs: ms(applied), ApplyWith: with, Manifests: len(s.devs)}
	index := map[string]int{}
	for i, d := range s.devs {
		index[d.id] = i
	}
	deadline := time.Now().Add(s.cfg.For + 2*time.Minute)
	if record {
		deadline = time.Now().Add(s.cfg.For)
	}
	var lat []time.Duration
	var last time.Time
	stall := s.newStallWatch(fmt.Sprintf("generation-%d", gen))
	for {
		ds, err := s.model.Devices(ctx)
		if err != nil {
			return rs, err
		}
		lat, last = lat[:0], time.Time{}
		for _, d := range ds {
			i, ok := index[d.Device]
			if !ok {
				continue
			}
			at, ok := readyAt(d, gen, s.cfg.Resources)
			if !ok {
				continue
			}
			lat = append(lat, at.Sub(stored[i]))
			if at.After(last) {
				last = at
			}
		}
		rs.Ready = len(lat)
		stall.observe(rs.Ready, ds)
		if rs.Ready == len(s.devs) {
			rs.Seen = ms(time.Since(start))
			break
		}
		if time.Now().After(deadline) {
			return rs, fmt.Errorf("generation %d: %d of %d devices Ready in the read model after %s", gen, rs.Ready, len(s.devs), time.Since(start).Round(time.Second))
		}
		if err := sleep(ctx, time.Second); err != nil {
			return rs, err
		}
	}
	rs.All = ms(last.Sub(start))
	rs.P50, rs.P99 = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	rs.Max = ms(lat[len(lat)-1])
	after, err := s.st.LastSeq(ctx)
	if err != nil {
		return rs, err
	}
	rs.Events = after - before
	s.log("generation %d Ready on every device: p50 %.0f ms, p99 %.0f ms, all %.0f ms", gen, rs.P50, rs.P99, rs.All)
	return rs, nil
}

// reconnect kills the server with SIGKILL, tampers with a file on every
// device while it is down (so their outboxes hold the drift and its
// correction), restarts it on the same address and data, and measures how
// fast the agents come back and drain.
func (s *sim) reconnect(ctx context.Context) (*ReconnectStats, error) {
	if s.srv == nil {
		return nil, fmt.Errorf("%w: --scenario reconnect restarts the server the simulator runs: not with --nats", events.ErrInvalid)
	}
	rs := &ReconnectStats{}
	down := time.Now()
	s.srv.Kill()
	s.log("server killed (SIGKILL); down for %s", s.cfg.Outage)
	// Every device is tampered with while the server is down, so that an
	// outage longer than the drift interval (a minute) leaves events in every
	// outbox (detection, correction): the reconnect is then a drain storm.
	for _, d := range s.devs {
		if err := tamper(d, s.gen, time.Now()); err != nil {
			return rs, err
		}
	}
	if err := sleep(ctx, s.cfg.Outage); err != nil {
		return rs, err
	}
	// Counted from the restart, not from the server's ready line: agents
	// reconnect as soon as it listens, before it prints where it listens
	// (counting from the line gave "99 % in 1 ms").
	up := time.Now()
	if err := s.srv.Start(); err != nil {
		return rs, err
	}
	rs.ServerStartMs = ms(time.Since(up))
	rs.OutageMs = ms(up.Sub(down))
	for _, d := range s.devs {
		rs.PendingAtRestart += int64(d.h.Agent.OutboxLen())
	}
	s.log("server back after %s with %d outbox events pending on the devices", up.Sub(down).Round(time.Millisecond), rs.PendingAtRestart)
	need := (len(s.devs)*99 + 99) / 100
	deadline := up.Add(s.cfg.For)
	stall := s.newStallWatch("reconnect")
	for {
		conn, drained := 0, 0
		for _, d := range s.devs {
			if d.nc.IsConnected() {
				conn++
				if d.h.Agent.OutboxLen() == 0 {
					drained++
				}
			}
		}
		el := ms(time.Since(up))
		if conn >= need && rs.Reconnected99 == 0 {
			rs.Reconnected99 = el
		}
		if conn == len(s.devs) && rs.ReconnectedAll == 0 {
			rs.ReconnectedAll = el
		}
		if drained >= need && rs.Drained99 == 0 {
			rs.Drained99 = el
		}
		rs.Reconnected, rs.Drained = conn, drained
		stall.observe(drained, nil)
		if drained == len(s.devs) {
			rs.DrainedAll = el
			break
		}
		if time.Now().After(deadline) {
			return rs, fmt.Errorf("reconnect: %d of %d devices reconnected and %d drained after %s", conn, len(s.devs), drained, s.cfg.For)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return rs, err
		}
	}
	s.log("reconnected: 99%% in %.0f ms, all in %.0f ms; drained: 99%% in %.0f ms, all in %.0f ms", rs.Reconnected99, rs.ReconnectedAll, rs.Drained99, rs.DrainedAll)
	return rs, nil
}

// tamper overwrites device d's first file with other content.
func tamper(d *device, gen int64, at time.Time) error {
	p := filepath.Join(d.root, "etc", "sim", "f0.conf")
	if err := os.WriteFile(p, []byte("tampered at "+at.Format(time.RFC3339Nano)+"\n"), 0o644); err != nil {
		return fmt.Errorf("tamper with %s: %w", p, err)
	}
	return nil
}

// drift tampers with one file on 1% of the devices (at least one) every
// s.cfg.TamperEvery, for the phase, and times each until the agent has put the
// file back (checked on disk).
func (s *sim) drift(ctx context.Context) (*DriftStats, error) {
	ds := &DriftStats{}
	end := time.Now().Add(s.cfg.For)
	per := max(1, len(s.devs)/100)
	var mu sync.Mutex
	var lat []time.Duration
	var corrected atomic.Int64
	var wg sync.WaitGroup
	next := 0
	for round := 0; time.Now().Before(end); round++ {
		ds.Rounds++
		for k := 0; k < per; k++ {
			d := s.devs[next%len(s.devs)]
			next++
			at := time.Now()
			if err := tamper(d, s.gen, at); err != nil {
				return ds, err
			}
			ds.Tampered++
			want := content(d.id, s.gen, 0)
			p := filepath.Join(d.root, "etc", "sim", "f0.conf")
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end.Add(2 * time.Minute)) {
					if b, err := os.ReadFile(p); err == nil && string(b) == want {
						corrected.Add(1)
						mu.Lock()
						lat = append(lat, time.Since(at))
						mu.Unlock()
						return
					}
					if sleep(ctx, 100*time.Millisecond) != nil {
						return
					}
				}
			}()
		}
		s.log("drift round %d: %d devices tampered with", round+1, per)
		wait := min(s.cfg.TamperEvery, time.Until(end))
		if wait <= 0 {
			break
		}
		if err := sleep(ctx, wait); err != nil {
			return ds, err
		}
	}
	wg.Wait()
	ds.Corrected = int(corrected.Load())
	ds.P50, ds.P99 = ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99))
	return ds, nil
}
