package sim

import (
	"context"
	"sync"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// window is the state at the start of a measured phase.
type window struct {
	start        time.Time
	server, self procUsage
	in, out      int64
	pin, pout    uint64
	seq, beats   uint64
	stopLag      func() []time.Duration
}

func (s *sim) kvLastSeq(ctx context.Context) uint64 {
	str, err := s.js.Stream(ctx, "KV_"+events.HeartbeatBucket)
	if err != nil {
		return 0
	}
	info, err := str.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.LastSeq
}

func (s *sim) wire() (in, out int64, pin, pout uint64) {
	for _, d := range s.devs {
		in += d.wire.in.Load()
		out += d.wire.out.Load()
		st := d.nc.Stats()
		pin += st.InBytes
		pout += st.OutBytes
	}
	return
}

func (s *sim) beginWindow(ctx context.Context) (*window, error) {
	w := &window{start: time.Now(), self: selfUsage()}
	if s.srv != nil {
		u, err := s.srv.Usage()
		if err != nil {
			return nil, err
		}
		w.server = u
	}
	w.in, w.out, w.pin, w.pout = s.wire()
	var err error
	if w.seq, err = s.st.LastSeq(ctx); err != nil {
		return nil, err
	}
	w.beats = s.kvLastSeq(ctx)
	every := 200 * time.Millisecond
	if s.cfg.Scenario == Idle {
		every = 2 * time.Second // nothing to lag behind; keep the probe's own cost off the idle figures
	}
	w.stopLag = s.sampleLag(ctx, every)
	return w, nil
}

func (s *sim) endWindow(ctx context.Context, w *window, rep *Report) error {
	lags := w.stopLag()
	end := time.Now()
	wall := end.Sub(w.start)
	rep.PhaseSeconds = wall.Seconds()
	self := selfUsage()
	rep.Agents = Usage{CPU: cpuShare(w.self, self), CPUSecs: (self.CPU - w.self.CPU).Seconds(), RSS: self.RSS, PerDev: self.RSS / int64(len(s.devs)), Measure: true,
		Note: "the simulator process: every agent, its Pebble store and NATS connection, and the simulator itself"}
	if s.srv != nil && s.cfg.Scenario != Reconnect {
		u, err := s.srv.Usage()
		if err != nil {
			return err
		}
		rep.Server.CPU, rep.Server.RSS, rep.Server.Measure = cpuShare(w.server, u), u.RSS, true
		rep.Server.CPUSecs = (u.CPU - w.server.CPU).Seconds()
	} else if s.srv != nil {
		if u, err := s.srv.Usage(); err == nil {
			// CPU of the restarted process only: from its start.
			rep.Server.CPU, rep.Server.RSS, rep.Server.Measure = float64(u.CPU)/float64(wall), u.RSS, true
			rep.Server.CPUSecs = u.CPU.Seconds()
			rep.Server.Note += "; restarted during the phase: CPU of the new process over the phase"
		}
	}
	in, out, pin, pout := s.wire()
	perDay := float64(24*time.Hour) / float64(wall) / float64(len(s.devs))
	rep.Wire = Wire{InBytes: in - w.in, OutBytes: out - w.out,
		BytesPerDevicePerDay:   float64(in-w.in+out-w.out) * perDay,
		PayloadPerDevicePerDay: float64(pin-w.pin+pout-w.pout) * perDay}
	if s.cfg.Scenario != Idle {
		rep.Wire.Note = "measured over the " + s.cfg.Scenario + " phase, not at idle"
	}
	seq, err := s.st.LastSeq(ctx)
	if err != nil {
		return err
	}
	rep.PhaseEvents = seq - w.seq
	rep.EventsPerSec = float64(rep.PhaseEvents) / wall.Seconds()
	if beats := s.kvLastSeq(ctx); beats >= w.beats {
		rep.HeartbeatPuts = beats - w.beats
	}
	rep.Durable = Durable{EventsPerSec: rep.EventsPerSec, HeartbeatsPerS: float64(rep.HeartbeatPuts) / wall.Seconds(),
		Note: "nats-server exposes no fsync counter; with fsync before ack each stored event is a durable write, and so is each heartbeat on a file-backed bucket"}
	rep.Lag.Samples = len(lags)
	if len(lags) > 0 {
		rep.Lag.P50, rep.Lag.P99 = ms(percentile(lags, 0.5)), ms(percentile(lags, 0.99))
		rep.Lag.Max = ms(lags[len(lags)-1])
	}
	return nil
}

// sampleLag measures projection lag until the returned function is called:
// it notes the stream's last sequence, times how long until the projection
// service's checkpoint reaches it (polling its status every 20 ms), waits
// every and does it again. Each sample costs the server a stream info
// request and one or more status requests.
func (s *sim) sampleLag(ctx context.Context, every time.Duration) func() []time.Duration {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var lags []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			last, err := s.st.LastSeq(ctx)
			t0 := time.Now()
			if err != nil {
				_ = sleep(ctx, every)
				continue
			}
			for ctx.Err() == nil {
				st, err := s.model.Status(ctx)
				if err == nil && st.Checkpoint >= last {
					mu.Lock()
					lags = append(lags, time.Since(t0))
					mu.Unlock()
					break
				}
				_ = sleep(ctx, 20*time.Millisecond)
			}
			_ = sleep(ctx, every)
		}
	}()
	return func() []time.Duration {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return lags
	}
}
