package timetravel_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// TestIndexKillHelper is the index followed by a child process of
// TestIndexKilledAtRandomPointsResumesFromItsCheckpoint; it prints its
// checkpoint as it moves, and does nothing in a normal run.
func TestIndexKillHelper(t *testing.T) {
	url, dir := os.Getenv("FLEET_TT_KILL_NATS"), os.Getenv("FLEET_TT_KILL_DIR")
	if url == "" || dir == "" {
		t.Skip("child process of TestIndexKilledAtRandomPointsResumesFromItsCheckpoint")
	}
	st := eventstest.Attach(t, url)
	x, err := timetravel.Open(dir, timetravel.WithSnapshotEvery(16))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for cp := uint64(0); ; time.Sleep(time.Millisecond) {
			if c := x.Checkpoint(); c != cp {
				cp = c
				fmt.Printf("checkpoint %d\n", cp)
			}
		}
	}()
	_ = x.Follow(context.Background(), st) // until killed
}

// TestIndexKilledAtRandomPointsResumesFromItsCheckpoint: the index is
// killed with SIGKILL at random points while it takes the log in (the
// runtime's guarantee, as for the projection service: the records and the
// checkpoint are one Pebble batch, so the store opens at a checkpoint with
// exactly the records up to it); after the kills it resumes, indexes every
// event once, and answers as the full fold.
func TestIndexKilledAtRandomPointsResumesFromItsCheckpoint(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(13, fixtures.Options{Devices: 4, Events: 20000, OfflineRate: 0.05})
	log := loadLog(t, env, evs)
	last := uint64(len(log))
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for kill := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestIndexKillHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FLEET_TT_KILL_NATS="+env.Server.URL(), "FLEET_TT_KILL_DIR="+dir)
		out, err := cmd.StdoutPipe()
		is.NoErr(err)
		is.NoErr(cmd.Start())
		target := uint64(kill)*last/4 + uint64(rng.Int64N(int64(last/4)))
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var cp uint64
			if _, err := fmt.Sscanf(sc.Text(), "checkpoint %d", &cp); err == nil && cp >= target {
				break
			}
		}
		is.NoErr(cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		x, err := timetravel.Open(dir, timetravel.WithSnapshotEvery(16))
		is.NoErr(err)
		cp := x.Checkpoint()
		is.Equal(x.Recovered(), "") // a kill is not damage
		for _, dev := range []string{"pi-001", "pi-002", "pi-003", "pi-004"} {
			_, _, st, err := x.Answer(timetravel.Query{Device: dev})
			if cp > 0 && err == nil {
				is.Equal(st.Events, countDevice(log[:cp], dev)) // the records of exactly the checkpoint's prefix
			}
		}
		is.NoErr(x.Close())
		t.Logf("kill %d at %d: checkpoint %d of %d", kill+1, target, cp, last)
	}
	x, stop := startIndex(t, env, dir, 16)
	defer stop()
	waitFor(t, x, last)
	answersAsTheFullFold(t, x, log, []int{0, 5000, 12345, 19999}, "pi-001", "pi-002", "pi-003", "pi-004") // each event once across the kills
}
