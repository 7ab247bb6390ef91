package timetravel_test

import (
	"context"
	"encoding/json"
	"iter"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// liveState is what the live projection held for each device after each of
// its events: views[d][k] is the device after its k+1 first events in log order.
type liveState struct {
	views map[string][][]byte
	ats   map[string][]time.Time
	seqs  map[string][]uint64
}

func foldLive(t *testing.T, log []events.Stored) liveState {
	f := projections.NewFleet()
	ls := liveState{views: map[string][][]byte{}, ats: map[string][]time.Time{}, seqs: map[string][]uint64{}}
	for _, s := range log {
		f.Apply(s)
		ls.views[s.Device] = append(ls.views[s.Device], view(t, f, s.Device))
		ls.ats[s.Device] = append(ls.ats[s.Device], s.At)
		ls.seqs[s.Device] = append(ls.seqs[s.Device], s.Seq)
	}
	return ls
}

func view(t *testing.T, f *projections.Fleet, id string) []byte {
	d, ok := f.Device(id)
	if !ok {
		return nil
	}
	return mustJSON(t, d)
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func slice(log []events.Stored) iter.Seq2[events.Stored, error] {
	return func(yield func(events.Stored, error) bool) {
		for _, s := range log {
			if !yield(s, nil) {
				return
			}
		}
	}
}

// loadLog appends a generated log to a real server and reads it back.
func loadLog(t *testing.T, env *eventstest.Env, evs []events.Event) []events.Stored {
	ctx := context.Background()
	if err := env.Store.AppendBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	var log []events.Stored
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		if err != nil {
			t.Fatal(err)
		}
		log = append(log, s)
	}
	if len(log) != len(evs) {
		t.Fatalf("read %d events back, appended %d", len(log), len(evs))
	}
	return log
}

func startIndex(t testing.TB, env *eventstest.Env, dir string, every int) (*timetravel.Index, func()) {
	x, err := timetravel.Open(dir, timetravel.WithSnapshotEvery(every))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = x.Follow(ctx, env.Store) }()
	stop := func() { cancel(); <-done; _ = x.Close() }
	return x, stop
}

func waitFor(t *testing.T, x *timetravel.Index, seq uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.WaitFor(ctx, seq); err != nil {
		t.Fatalf("index at %d, want %d: %v", x.Checkpoint(), seq, err)
	}
}

// TestAnswerEqualsFullFoldAndLiveProjection is the property test: on
// generated logs with offline periods and late flushes, failures and
// retries, for random times T and every device, the index's answer equals
// the full fold of the device's events stamped at or before T; and where
// those events are a prefix of the device's log (nothing stamped after T was
// stored before one stamped at or before it), it equals what the live
// projection held right after the last of them.
func TestAnswerEqualsFullFoldAndLiveProjection(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed"+string(rune('0'+seed)), func(t *testing.T) {
			is := is.New(t)
			env := eventstest.Start(t, true)
			evs := fixtures.GenerateLog(seed, fixtures.Options{Devices: 4, Events: 3000, OfflineRate: 0.05, FailureRate: 0.3, UnknownKind: true})
			log := loadLog(t, env, evs)
			live := foldLive(t, log)
			x, stop := startIndex(t, env, t.TempDir(), 16)
			defer stop()
			waitFor(t, x, log[len(log)-1].Seq)

			byDevice := map[string][]events.Stored{}
			for _, s := range log {
				byDevice[s.Device] = append(byDevice[s.Device], s)
			}
			rng := rand.New(rand.NewPCG(seed, 7))
			first, last := log[0].At, log[len(log)-1].At
			for _, s := range log {
				if s.At.After(last) {
					last = s.At
				}
			}
			// event times of late events (stamped before something the device already had on the log)
			var lateAts []time.Time
			for _, devLog := range byDevice {
				var max time.Time
				for _, s := range devLog {
					if s.At.Before(max) {
						lateAts = append(lateAts, s.At)
					} else {
						max = s.At
					}
				}
			}
			is.True(len(lateAts) > 0) // the generator made late flushes
			var prefixCases, lateCases, lateFolded int
			for range 150 {
				// times around events (exact stamps and between them), inside offline periods, and anywhere
				var T time.Time
				switch rng.IntN(3) {
				case 0:
					T = log[rng.IntN(len(log))].At.Add(time.Duration(rng.IntN(3)-1) * time.Nanosecond)
				case 1:
					T = lateAts[rng.IntN(len(lateAts))].Add(time.Duration(rng.IntN(3)-1) * time.Nanosecond)
				default:
					T = first.Add(time.Duration(rng.Int64N(int64(last.Sub(first)) + int64(time.Minute))))
				}
				for dev, devLog := range byDevice {
					q := timetravel.Query{Device: dev, At: T}
					fast, ok, st, err := x.Answer(q)
					is.NoErr(err)
					full, fok, _, err := timetravel.FoldAt(slice(devLog), q)
					is.NoErr(err)
					is.Equal(ok, fok)
					is.Equal(string(mustJSON(t, fast)), string(mustJSON(t, full))) // fast answer == full fold
					lateFolded += st.Late
					// at most one snapshot interval folded onto the snapshot: 16 events, or
					// (when the device's state is larger than 16 events) its size in bytes plus the last event
					is.True(st.Folded-st.Late <= 16 || st.FoldedBytes <= st.SnapshotBytes+4096)

					// is the set {at <= T} a prefix of the device's log?
					ats := live.ats[dev]
					k := 0
					for k < len(ats) && !ats[k].After(T) {
						k++
					}
					prefix := true
					for _, a := range ats[k:] {
						if !a.After(T) {
							prefix = false
							break
						}
					}
					if !prefix {
						lateCases++
						continue
					}
					prefixCases++
					var want []byte
					if k > 0 {
						want = live.views[dev][k-1]
					}
					if !ok {
						is.Equal(want, nil)
						continue
					}
					is.Equal(string(mustJSON(t, fast)), string(want)) // == live projection after the last event at or before T
				}
			}
			t.Logf("%d answers equal to the live projection, %d inside late flushes (%d late events folded)", prefixCases, lateCases, lateFolded)
			is.True(prefixCases > 50)
			is.True(lateCases > 10)  // late flushes were exercised
			is.True(lateFolded > 10) // and the late-event step was used

			// by stream position: the live projection right after the last of the device's events at or before it
			for range 200 {
				N := log[rng.IntN(len(log))].Seq
				for dev := range byDevice {
					fast, ok, _, err := x.Answer(timetravel.Query{Device: dev, Seq: N})
					is.NoErr(err)
					k, _ := slices.BinarySearch(live.seqs[dev], N+1)
					if k == 0 {
						is.True(!ok)
						continue
					}
					is.Equal(string(mustJSON(t, fast)), string(live.views[dev][k-1]))
				}
			}
		})
	}
}

func TestIndexResumesAfterRestart(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(9, fixtures.Options{Devices: 3, Events: 2000, OfflineRate: 0.05})
	ctx := context.Background()
	is.NoErr(env.Store.AppendBatch(ctx, evs[:1200]))
	dir := t.TempDir()
	x, stop := startIndex(t, env, dir, 32)
	waitFor(t, x, 1200)
	stop()

	is.NoErr(env.Store.AppendBatch(ctx, evs[1200:]))
	x, stop = startIndex(t, env, dir, 32)
	defer stop()
	waitFor(t, x, 2000)
	is.Equal(x.Checkpoint(), uint64(2000))

	var log []events.Stored
	for s, err := range env.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		log = append(log, s)
	}
	answersAsTheFullFold(t, x, log, []int{0, 500, 1199, 1200, 1500, 1999}, "pi-001", "pi-002", "pi-003") // each event once across the restart
}

// answersAsTheFullFold checks, at the event times of log at the positions
// ats, that the index answers for each device as the full fold of log, and
// holds each of its events once.
func answersAsTheFullFold(t *testing.T, x *timetravel.Index, log []events.Stored, ats []int, devs ...string) {
	t.Helper()
	for _, i := range ats {
		for _, dev := range devs {
			q := timetravel.Query{Device: dev, At: log[i].At}
			fast, _, st, err := x.Answer(q)
			if err != nil {
				t.Fatal(err)
			}
			full, _, _, err := timetravel.FoldAt(slice(log), q)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := string(mustJSON(t, fast)), string(mustJSON(t, full)); a != b {
				t.Fatalf("%s at %s: index %s, full fold %s", dev, q.At, a, b)
			}
			if n := countDevice(log, dev); st.Events != n {
				t.Fatalf("%s: %d events indexed, the log has %d", dev, st.Events, n)
			}
		}
	}
}

func countDevice(log []events.Stored, dev string) int {
	n := 0
	for _, s := range log {
		if s.Device == dev {
			n++
		}
	}
	return n
}

// A retried publish after the stream's duplicate window is stored twice;
// time travel folds it once, as the live projection does.
func TestDuplicateEventsFoldOnce(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(4, fixtures.Options{Devices: 2, Events: 600})
	var log []events.Stored
	for i, e := range evs {
		log = append(log, events.Stored{Event: e, Seq: uint64(len(log) + 1)})
		if i%37 == 5 { // the same event again, later in the log
			log = append(log, events.Stored{Event: evs[i-3], Seq: uint64(len(log) + 1)})
		}
	}
	x, err := timetravel.Open(t.TempDir(), timetravel.WithSnapshotEvery(8))
	is.NoErr(err)
	defer x.Close()
	var msgs []timetravel.Msg
	for _, s := range log {
		msgs = append(msgs, timetravel.Msg{Stored: s})
	}
	is.NoErr(x.Apply(msgs[:300]))
	is.NoErr(x.Apply(msgs)) // redelivery of the first 300: skipped by the checkpoint
	is.Equal(x.Checkpoint(), uint64(len(log)))
	for i := 0; i < len(log); i += 7 {
		for _, dev := range []string{"pi-001", "pi-002"} {
			q := timetravel.Query{Device: dev, At: log[i].At}
			fast, _, _, err := x.Answer(q)
			is.NoErr(err)
			full, _, _, err := timetravel.FoldAt(slice(log), q)
			is.NoErr(err)
			is.Equal(string(mustJSON(t, fast)), string(mustJSON(t, full)))
		}
	}
	_, _, _, err = x.Answer(timetravel.Query{Device: "nope", At: log[0].At})
	is.True(err != nil)
}

// Generated logs, with their late flushes, pass replay --verify.
func TestGeneratedLogsVerify(t *testing.T) {
	is := is.New(t)
	for seed := uint64(1); seed <= 5; seed++ {
		evs := fixtures.GenerateLog(seed, fixtures.Options{Devices: 6, Events: 5000, OfflineRate: 0.05, UnknownKind: true})
		var log []events.Stored
		for i, e := range evs {
			log = append(log, events.Stored{Event: e, Seq: uint64(i + 1)})
		}
		rep, err := replay.Verify(slice(log), true)
		is.NoErr(err)
		if !rep.OK() {
			t.Fatalf("seed %d: %s; first: %v", seed, rep.SummaryLine(), rep.Violations[:min(5, len(rep.Violations))])
		}
	}
}
