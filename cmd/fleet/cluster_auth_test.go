package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/fsm"
)

// authAgent starts an agent with a device's credentials against url and
// returns it with a function saying whether it is Ready at gen with its
// outbox drained.
func authAgent(t *testing.T, ctx context.Context, url, creds, dev string, got *committed) (*agent.Handle, func(int64) bool) {
	t.Helper()
	is := is.New(t)
	copts, err := auth.ClientOptions(creds)
	is.NoErr(err)
	var mu sync.Mutex
	var violations []error
	nc, err := nats.Connect(url, append(copts, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err)
			mu.Unlock()
		}))...)
	is.NoErr(err)
	t.Cleanup(func() {
		nc.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, v := range violations {
			if errors.Is(v, nats.ErrPermissionViolation) {
				t.Errorf("%s: the agent's own work hit a permission it lacks: %s", dev, v)
			}
		}
	})
	h, err := agent.Start(ctx, nc, dev, agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(t.TempDir()), agent.WithStateDir(t.TempDir()),
		agent.WithLogger(quietLog), agent.WithOnEvent(got.add), agent.WithManifestPoll(200*time.Millisecond),
		agent.WithDriftInterval(200*time.Millisecond), agent.WithBackoff(50*time.Millisecond, time.Second),
		agent.WithHeartbeatInterval(time.Second))
	is.NoErr(err)
	t.Cleanup(func() { _ = h.Stop() })
	return h, func(gen int64) bool {
		st := h.Agent.Status()
		if h.Agent.Generation() != gen || len(st) == 0 || h.Agent.OutboxLen() != 0 {
			return false
		}
		for _, s := range st {
			if s.State != fsm.Ready || s.Generation != gen {
				return false
			}
		}
		return true
	}
}

// authKeys is a server data directory with fleet's auth keys, the
// authority, and the block the nodes of a cluster or a hub include.
func authKeys(t *testing.T) (string, *auth.Authority, string) {
	t.Helper()
	data := t.TempDir()
	a, err := auth.Open(filepath.Join(data, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := a.NATSConfig()
	if err != nil {
		t.Fatal(err)
	}
	return data, a, block
}

// fileManifest is a manifest of one file with content.
func fileManifest(content string) events.Manifest {
	return events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile,
		File: &events.FileSpec{Path: "/etc/motd", Content: content + "\n"}}}}
}

// TestClusterAuthDevicesConverge: `fleet server --nats URLS --replicas 3
// --auth` against a 3-node cluster whose nodes include the block the
// server writes (DATA/auth/nats-auth.conf). An agent with a device's
// credentials converges through a kill of the stream leader without a
// single permission violation, and the same credentials still cannot
// read through the stream leader (STREAM.MSG.GET reads any subject) nor
// write as another device. A revocation pushed to one node reaches all.
func TestClusterAuthDevicesConverge(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end cluster run")
	}
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data, a, block := authKeys(t)
	c := eventstest.StartCluster(t, 3, eventstest.ClusterOptions{Extra: block})

	rs, err := (&ServerCmd{Data: data, Replicas: 3, Auth: true, HeartbeatTTL: 30 * time.Second, natsFlag: true}).Start(ctx, &Globals{NATS: c.URLs()}, nil)
	is.NoErr(err)
	defer rs.Stop()
	written, err := os.ReadFile(filepath.Join(data, "auth", auth.NATSConfigFile))
	is.NoErr(err)
	is.Equal(string(written), block) // what the nodes include

	opNC := c.Connect(nats.UserCredentials(a.OperatorCredsPath()))
	opJS, _ := jetstream.New(opNC)
	ops, err := jsstore.Attach(ctx, opJS)
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	apply := func(dev, content string) int64 {
		t.Helper()
		actx, acancel := context.WithTimeout(ctx, 60*time.Second)
		defer acancel()
		res, err := events.Apply(actx, ops, clock, dev, fileManifest(content), "user:ops", nil)
		is.NoErr(err)
		return res.Generation
	}
	got := &committed{ids: map[string]string{}}
	credsDir := t.TempDir()
	ready := map[string]func(int64) bool{}
	gens := map[string]int64{}
	for _, dev := range []string{"pi-01", "pi-02"} {
		creds, _, err := a.AddDevice(dev)
		is.NoErr(err)
		p := filepath.Join(credsDir, dev+".creds")
		is.NoErr(os.WriteFile(p, creds, 0o600))
		gens[dev] = apply(dev, "g1")
		_, ready[dev] = authAgent(t, ctx, c.URLs(), p, dev, got)
	}
	all := func() bool { return ready["pi-01"](gens["pi-01"]) && ready["pi-02"](gens["pi-02"]) }
	eventstest.WaitFor(t, 60*time.Second, "both agents Ready at generation 1 with device credentials", all)

	leader := c.WaitStreamLeader(opJS, events.Stream, 30*time.Second)
	leader.Kill()
	for _, dev := range []string{"pi-01", "pi-02"} {
		gens[dev] = apply(dev, "g2")
	}
	leader.Start()
	eventstest.WaitFor(t, 90*time.Second, "both agents Ready at generation 2 after the stream leader was killed", all)
	checkLogOnce(t, ctx, ops, got)

	// still least privilege on the cluster
	copts, err := auth.ClientOptions(filepath.Join(credsDir, "pi-01.creds"))
	is.NoErr(err)
	dnc, err := nats.Connect(c.URLs(), append(copts, quietNATS)...)
	is.NoErr(err)
	defer dnc.Close()
	_, err = dnc.Request("$JS.API.STREAM.MSG.GET."+events.Stream, []byte(`{"last_by_subj":"`+events.ManifestSubject("pi-02")+`"}`), time.Second)
	is.True(err != nil) // a leader read could read any device's manifest: not a device's
	djs, _ := jetstream.New(dnc)
	_, err = djs.Publish(ctx, events.LifecycleSubject("pi-02"), []byte("{}"))
	is.True(err != nil) // not as another device

	// a revocation pushed to the cluster reaches every node
	tok, _, err := a.RevokeDevice("pi-02")
	is.NoErr(err)
	sys := c.Connect(nats.UserCredentials(a.SystemCredsPath()))
	is.NoErr(auth.Push(ctx, sys, tok))
	pcopts, err := auth.ClientOptions(filepath.Join(credsDir, "pi-02.creds"))
	is.NoErr(err)
	for _, nd := range c.Nodes {
		eventstest.WaitFor(t, 10*time.Second, "pi-02 refused by "+nd.Name, func() bool {
			nc, err := nats.Connect(nd.URL(), pcopts...)
			if err == nil {
				nc.Close()
			}
			return err != nil
		})
	}
}

// quietNATS drops a connection's asynchronous errors: the permission
// violations a test provokes on purpose.
var quietNATS = nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
