package projections

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

var killEvents = flag.Int("kill-events", 200000, "messages in the SIGKILL tests' log (the issue's 200,000; 20,000 with -short)")

// TestKillHelper is the projection service run as a child process by the
// SIGKILL tests; it does nothing in a normal run.
func TestKillHelper(t *testing.T) {
	url, dir := os.Getenv("FLEET_KILL_NATS"), os.Getenv("FLEET_KILL_DIR")
	if url == "" || dir == "" {
		t.Skip("child process of TestServiceKilled*")
	}
	st := eventstest.Attach(t, url)
	s, err := Open(dir, WithMaxBatch(1000))
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Run(context.Background(), st) // until killed
}

func TestServiceKilledAtRandomPointsEndsByteEqual(t *testing.T) {
	testKilled(t, false)
}

func TestServiceKilledWithEveryEventStoredTwiceEndsByteEqual(t *testing.T) {
	testKilled(t, true)
}

func testKilled(t *testing.T, twice bool) {
	is := is.New(t)
	n := *killEvents
	if testing.Short() {
		n = 20000
	}
	if twice {
		n /= 2 // the stream holds each twice: the same number of messages
	}
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(21, fixtures.Options{Devices: 50, Resources: 6, Events: n, UnknownKind: true})
	last := appendLog(t, env, evs, twice)

	// uninterrupted run
	ref, err := Open(t.TempDir(), WithMaxBatch(1000))
	is.NoErr(err)
	runService(t, ref, env.Store, last)
	want, err := ref.Dump()
	is.NoErr(err)
	is.NoErr(ref.Close())

	// child processes killed with SIGKILL at random points
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for kills < 8 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FLEET_KILL_NATS="+env.Server.URL(), "FLEET_KILL_DIR="+dir)
		// the child makes the consumer anew; drop the last one so as not to read its progress
		_ = env.JS.DeleteConsumer(context.Background(), events.Stream, DefaultDurable)
		is.NoErr(cmd.Start())
		// kill once the child's consumer has delivered past a random point of
		// this stretch of the log, so that the kills spread over all of it
		target := uint64(kills)*last/8 + uint64(rng.Int64N(int64(last/8)))
		waitDelivered(t, env.JS, target, 30*time.Second)
		time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		is.NoErr(cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		kills++
		s, err := Open(dir)
		is.NoErr(err)
		cp := s.Checkpoint()
		is.NoErr(s.Close())
		t.Logf("kill %d: checkpoint %d of %d", kills, cp, last)
		if cp >= last {
			break
		}
	}
	s, err := Open(dir, WithMaxBatch(1000))
	is.NoErr(err)
	defer s.Close()
	runService(t, s, env.Store, last) // resume after the last kill
	got, err := s.Dump()
	is.NoErr(err)
	is.Equal(len(got), len(want))
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("key %s differs after %d kills:\n got %.300s\nwant %.300s", k, kills, got[k], v)
		}
	}
}

// waitDelivered waits until the service's durable consumer has delivered
// stream sequence seq, or for at most d.
func waitDelivered(t *testing.T, js jetstream.JetStream, seq uint64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for ctx.Err() == nil {
		if c, err := js.Consumer(ctx, events.Stream, DefaultDurable); err == nil {
			if info, err := c.Info(ctx); err == nil && info.Delivered.Stream >= seq {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
