package projections

import (
	"context"
	"flag"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

var (
	benchEvents    = flag.Int("bench-events", 100000, "events in the rebuild benchmark's log (the issue asks 1,000,000)")
	rebuildProfile = flag.String("rebuild-cpuprofile", "", "write a CPU profile of BenchmarkRebuild's rebuilds only (not the log's setup nor the raw read) to this file")
	rawProfile     = flag.String("raw-cpuprofile", "", "write a CPU profile of BenchmarkRebuild's raw reads only to this file")
	rebuildHeap    = flag.String("rebuild-heapprofile", "", "write a heap profile taken just before BenchmarkRebuild's first rebuild to this file")
)

// BenchmarkRebuild rebuilds the read models from a generated log and reports
// events/s beside a raw ordered-consumer read of the same stream.
func BenchmarkRebuild(b *testing.B) {
	env := eventstest.Start(b, true)
	evs := fixtures.GenerateLog(31, fixtures.Options{Devices: 200, Resources: 6, Events: *benchEvents, UnknownKind: true})
	last := appendLog(b, env, evs, false)
	ctx := context.Background()
	b.ResetTimer()
	var rawTime, rebuildTime time.Duration // summed over iterations: each iteration reads raw, then rebuilds
	var rawAlloc, rebuildAlloc uint64      // bytes allocated (by the whole process, the server's part included)
	for range b.N {
		// each phase starts from a collected heap: neither pays for the
		// garbage of what ran before it (without this the raw read, right
		// after generating and appending the log, collected the setup's
		// garbage on its own time)
		runtime.GC()
		a0 := totalAlloc()
		stopRaw := startProfile(b, *rawProfile)
		start := time.Now()
		cons, err := env.JS.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		cc, err := cons.Consume(func(m jetstream.Msg) {
			md, _ := m.Metadata()
			if md.Sequence.Stream == last {
				close(done)
			}
		}, jetstream.PullMaxMessages(4096))
		if err != nil {
			b.Fatal(err)
		}
		<-done
		cc.Stop()
		rawTime += time.Since(start)
		stopRaw()
		a1 := totalAlloc()
		rawAlloc += a1 - a0

		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		a1 = totalAlloc()
		if *rebuildHeap != "" {
			writeHeap(b, *rebuildHeap)
			*rebuildHeap = ""
		}
		stopProfile := startProfile(b, *rebuildProfile)
		start = time.Now()
		if err := s.Rebuild(ctx, env.Store, nil); err != nil {
			b.Fatal(err)
		}
		rebuildTime += time.Since(start)
		stopProfile()
		rebuildAlloc += totalAlloc() - a1
		s.Close()
	}
	rawRate := float64(last) * float64(b.N) / rawTime.Seconds()
	rate := float64(last) * float64(b.N) / rebuildTime.Seconds()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(rawRate, "raw-events/s")
	b.ReportMetric(rate/rawRate, "of-raw")
	b.ReportMetric(float64(rebuildAlloc)/float64(last)/float64(b.N), "B/event")
	b.ReportMetric(float64(rawAlloc)/float64(last)/float64(b.N), "raw-B/event")
}

// totalAlloc is how many bytes the process has allocated so far.
func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

// startProfile starts a CPU profile into file ("" : none) and returns
// what stops it.
func startProfile(b *testing.B, file string) (stop func()) {
	if file == "" {
		return func() {}
	}
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// writeHeap writes a heap profile of what is live now into file.
func writeHeap(b *testing.B, file string) {
	runtime.GC()
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

var (
	latencyRate = flag.Int("latency-rate", 5000, "events/s appended by BenchmarkAppendToReadModel")
	latencySecs = flag.Duration("latency-for", 4*time.Second, "how long BenchmarkAppendToReadModel appends")
)

// BenchmarkAppendToReadModel appends events one by one at a paced rate
// (-latency-rate, default 5,000/s) while the service runs, and reports the
// time from the start of each append to the service's batch that holds it
// being written (folded, in Pebble with the checkpoint, synced) as p50/p99,
// beside the raw JetStream latency in the same run: append to delivery on
// an ordered consumer of the same stream.
func BenchmarkAppendToReadModel(b *testing.B) {
	n := int(float64(*latencyRate) * latencySecs.Seconds())
	evs := fixtures.GenerateLog(41, fixtures.Options{Devices: 200, Resources: 6, Events: n + 1, UnknownKind: true})
	var p50, p99, rawP50, rawP99, rate float64
	for range b.N {
		b.StopTimer()
		env := eventstest.Start(b, true)
		ctx, cancel := context.WithCancel(context.Background())
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		applied := make([]time.Time, n+2) // by sequence
		var prev uint64
		var amu sync.Mutex
		s.OnBatch(func(bi BatchInfo) {
			now := time.Now()
			amu.Lock()
			for seq := prev + 1; seq <= bi.Checkpoint && seq < uint64(len(applied)); seq++ {
				applied[seq] = now
			}
			prev = max(prev, bi.Checkpoint)
			amu.Unlock()
		})
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, env.Store) }()
		// warm up: the first event, through the service
		if _, _, err := env.Store.Append(ctx, evs[0]); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitFor(ctx, 1); err != nil {
			b.Fatal(err)
		}
		rawAt := make([]time.Time, n+2)
		cons, err := env.JS.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy})
		if err != nil {
			b.Fatal(err)
		}
		var rmu sync.Mutex
		cc, err := cons.Consume(func(m jetstream.Msg) {
			now := time.Now()
			md, err := m.Metadata()
			if err != nil {
				return
			}
			rmu.Lock()
			if md.Sequence.Stream < uint64(len(rawAt)) {
				rawAt[md.Sequence.Stream] = now
			}
			rmu.Unlock()
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sent := make([]time.Time, n)
		seqs := make([]uint64, n)
		interval := time.Second / time.Duration(*latencyRate)
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			sent[i] = time.Now()
			seq, _, err := env.Store.Append(ctx, evs[i+1])
			if err != nil {
				b.Fatal(err)
			}
			seqs[i] = seq
		}
		rate = float64(n) / time.Since(start).Seconds()
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		if err := s.WaitFor(wctx, seqs[n-1]); err != nil {
			b.Fatal(err)
		}
		wcancel()
		b.StopTimer()
		time.Sleep(100 * time.Millisecond) // the raw consumer's last deliveries
		cc.Stop()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		st := s.Stats()
		b.Logf("batches %d, %.1f events a batch, %.2f ms folding and writing a batch", st.Batches, float64(st.Applied)/float64(st.Batches), 1000*st.FoldSecs/float64(st.Batches))
		s.Close()
		var lat, raw []time.Duration
		amu.Lock()
		rmu.Lock()
		for i, seq := range seqs {
			lat = append(lat, applied[seq].Sub(sent[i]))
			if !rawAt[seq].IsZero() {
				raw = append(raw, rawAt[seq].Sub(sent[i]))
			}
		}
		rmu.Unlock()
		amu.Unlock()
		p50, p99 = quantile(lat, 0.50), quantile(lat, 0.99)
		rawP50, rawP99 = quantile(raw, 0.50), quantile(raw, 0.99)
		env.Stop()
	}
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(rawP50, "raw-p50-ms")
	b.ReportMetric(rawP99, "raw-p99-ms")
}

// quantile returns the q-quantile of ds in milliseconds.
func quantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Millisecond)
}
