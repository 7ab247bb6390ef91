package projections

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
)

// seqRecorder is a consumer of the runtime other than the service (as the
// time-travel index is): it records the sequences it takes in, and its
// next write fails when fail is set.
type seqRecorder struct {
	mu   sync.Mutex
	seqs []uint64
	cp   uint64
	fail bool
}

func (r *seqRecorder) Checkpoint() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cp
}

func (r *seqRecorder) ApplyBatch(b events.Batch) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		r.fail = false
		return errors.New("disk on fire")
	}
	for _, run := range b.Runs {
		for _, d := range run {
			if d.Seq > r.cp {
				r.seqs, r.cp = append(r.seqs, d.Seq), d.Seq
			}
		}
	}
	return nil
}

// TestFollowLogRunsAnyConsumerAndResumesAfterAFailure: FollowLog hands a
// consumer every sequence once, in order; a batch it fails to write is
// logged with its cause and followed again from its checkpoint.
func TestFollowLogRunsAnyConsumerAndResumesAfterAFailure(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	evs := fixtures.GenerateLog(21, fixtures.Options{Devices: 3, Events: 900})
	appendLog(t, env, evs[:600], false)
	var logs eventstest.Buffer
	fails := NewFailureLog(slog.New(slog.NewTextHandler(&logs, nil)), "test consumer failed", nil)
	r := &seqRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- FollowLog(ctx, env.Store, r, FollowOptions{Max: 100, Fails: fails, Retry: 10 * time.Millisecond})
	}()
	eventstest.WaitFor(t, 20*time.Second, "the first 600 events", func() bool { return r.Checkpoint() == 600 })
	r.mu.Lock()
	r.fail = true
	r.mu.Unlock()
	appendLog(t, env, evs[600:], false)
	eventstest.WaitFor(t, 20*time.Second, "all 900 events", func() bool { return r.Checkpoint() == 900 })
	cancel()
	is.NoErr(<-done)
	for i, s := range r.seqs {
		is.Equal(s, uint64(i+1)) // every sequence once, in order
	}
	is.Equal(len(r.seqs), 900)
	is.Equal(fails.Total(), uint64(1))
	is.True(strings.Contains(logs.String(), "disk on fire")) // the cause
	is.True(strings.Contains(logs.String(), "recovered"))
}
