package jsstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// clusterStore attaches to FLEET through one node of the cluster, as an
// operator's fleet apply would.
func clusterStore(t *testing.T, c *eventstest.Cluster, node int) *jsstore.Store {
	t.Helper()
	nc, err := nats.Connect(c.Nodes[node].URL(), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := jsstore.Attach(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestClusterStreamAndBucketAreR3AndReappliedIdempotently: on a real
// 3-node cluster, FLEET and the heartbeat bucket are created with 3
// replicas; applying the same config again changes nothing, and keeps
// sources fleet does not manage (a site's).
func TestClusterStreamAndBucketAreR3AndReappliedIdempotently(t *testing.T) {
	is := is.New(t)
	c := eventstest.StartCluster(t, 3, eventstest.ClusterOptions{})
	nc := c.Connect()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	_, err := jsstore.Open(ctx, js, jsstore.Config{Replicas: 3})
	is.NoErr(err)
	kvCfg := jetstream.KeyValueConfig{Bucket: events.HeartbeatBucket, TTL: time.Minute, Storage: jetstream.FileStorage, Replicas: 3, History: 1}
	_, err = jsstore.EnsureKeyValue(ctx, js, kvCfg)
	is.NoErr(err)
	c.WaitStreamLeader(js, events.Stream, 20*time.Second)
	s, err := js.Stream(ctx, events.Stream)
	is.NoErr(err)
	info := s.CachedInfo()
	is.Equal(info.Config.Replicas, 3)
	is.Equal(len(info.Cluster.Replicas), 2) // a leader and two followers
	kvs, err := js.Stream(ctx, "KV_"+events.HeartbeatBucket)
	is.NoErr(err)
	is.Equal(kvs.CachedInfo().Config.Replicas, 3)

	// a source added by someone else (a site) survives a re-apply
	cfg := info.Config
	cfg.Sources = []*jetstream.StreamSource{{Name: "OTHER"}}
	_, err = js.UpdateStream(ctx, cfg)
	is.NoErr(err)
	_, err = jsstore.Open(ctx, js, jsstore.Config{Replicas: 3})
	is.NoErr(err)
	_, err = jsstore.EnsureKeyValue(ctx, js, kvCfg)
	is.NoErr(err)
	s, err = js.Stream(ctx, events.Stream)
	is.NoErr(err)
	is.Equal(len(s.CachedInfo().Config.Sources), 1)
	is.Equal(s.CachedInfo().Config.Replicas, 3)
	is.Equal(s.CachedInfo().Created, info.Created) // the same stream, not a new one
}

// TestClusterRacingAppliesOneWinsEachRound: two operators, each connected
// to a different node of a real 3-node cluster, read the device's last
// manifest and race the next generation. Each round exactly one wins; the
// other gets a *ConflictError that names the winner's sequence (not the
// stale "expected N, found N" of a write refused while the winner's was
// still in flight); the log holds generations 1..rounds, none twice.
func TestClusterRacingAppliesOneWinsEachRound(t *testing.T) {
	is := is.New(t)
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	c := eventstest.StartCluster(t, 3, eventstest.ClusterOptions{})
	nc := c.Connect()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	_, err := jsstore.Open(ctx, js, jsstore.Config{Replicas: 3})
	is.NoErr(err)
	c.WaitStreamLeader(js, events.Stream, 20*time.Second)
	ops := []*jsstore.Store{clusterStore(t, c, 0), clusterStore(t, c, 2)}
	clock := newClock(t)
	const device = "pi-01"
	for round := 1; round <= rounds; round++ {
		results := make([]error, 2)
		applied := make([]events.Applied, 2)
		var read, wg sync.WaitGroup
		read.Add(2)
		start := make(chan struct{})
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var expected uint64
				var gen int64
				last, err := ops[w].LastManifest(ctx, device)
				switch {
				case err == nil:
					expected, gen = last.Seq, last.Generation
				case !errors.Is(err, events.ErrNotFound):
					results[w] = err
				}
				read.Done()
				<-start
				if results[w] == nil {
					applied[w], results[w] = events.ApplyAfter(ctx, ops[w], clock, device, manifest(fmt.Sprintf("round %d writer %d\n", round, w)),
						fmt.Sprintf("user:writer%d", w), nil, expected, gen)
				}
			}()
		}
		read.Wait()
		close(start)
		wg.Wait()
		wins, conflicts := 0, 0
		var ces []*events.ConflictError
		var winSeq uint64
		for w, err := range results {
			var ce *events.ConflictError
			switch {
			case err == nil:
				wins++
				winSeq = applied[w].Seq
			case errors.As(err, &ce):
				conflicts++
				ces = append(ces, ce)
			default:
				t.Fatalf("round %d: writer %d: unexpected error %v", round, w, err)
			}
		}
		is.Equal(wins, 1)
		is.Equal(conflicts, 1)
		is.True(errors.Is(ces[0], events.ErrConflict))
		is.Equal(ces[0].Actual, winSeq) // the conflict names the winner's write
		is.True(ces[0].Actual > ces[0].Expected)
		last, err := ops[0].LastManifest(ctx, device)
		is.NoErr(err)
		is.Equal(last.Generation, int64(round))
	}
	var gens []int64
	for s, err := range ops[1].Read(ctx, events.Filter{Device: device, Types: []string{events.TypeManifestApplied}}) {
		is.NoErr(err)
		gens = append(gens, s.Generation)
	}
	is.Equal(len(gens), rounds)
	for i, g := range gens {
		is.Equal(g, int64(i+1))
	}
}
