package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// authHub starts a hub of one nats-server with fleet's auth (its node
// includes DATA/auth/nats-auth.conf; JetStream domain "hub", a leafnodes
// listener) and opens its FLEET with the operator's credentials. It returns
// the hub's data directory, its authority, the cluster and the store.
func authHub(ctx context.Context, t *testing.T) (string, *auth.Authority, *eventstest.Cluster, *jsstore.Store) {
	t.Helper()
	data, a, block := authKeys(t)
	hubC := eventstest.StartCluster(t, 1, eventstest.ClusterOptions{Domain: "hub", Leafnodes: true, Extra: block})
	hubJS, _ := jetstream.New(hubC.Connect(nats.UserCredentials(a.OperatorCredsPath())))
	hub, err := jsstore.Open(ctx, hubJS, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return data, a, hubC, hub
}

// TestSiteAuthDeviceCredentialsValidAtTheSite: a hub with fleet's auth
// (its nodes include DATA/auth/nats-auth.conf) and `fleet site --auth DIR`
// with a copy of the hub's auth directory. A device's credentials from
// `fleet device add` at the hub let its agent converge at the site, its
// events reach the hub's FLEET through the site's source, and at the site
// the device still cannot write as another device. A site without --auth
// cannot join a hub that requires credentials.
func TestSiteAuthDeviceCredentialsValidAtTheSite(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end site run")
	}
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data, a, hubC, hub := authHub(ctx, t)

	creds, _, err := a.AddDevice("pi-01")
	is.NoErr(err)
	credsPath := filepath.Join(t.TempDir(), "pi-01.creds")
	is.NoErr(os.WriteFile(credsPath, creds, 0o600))
	siteAuth := filepath.Join(t.TempDir(), "auth") // the copy taken to the site
	is.NoErr(os.CopyFS(siteAuth, os.DirFS(filepath.Join(data, "auth"))))

	site, err := (&SiteCmd{Hub: hubC.Nodes[0].LeafURL(), Domain: "shop-1", HubDomain: "hub", Data: t.TempDir(),
		Listen: "127.0.0.1:0", Devices: []string{"pi-01", "pi-02"}, HeartbeatTTL: 30 * time.Second, Auth: siteAuth}).Start(ctx, nil)
	is.NoErr(err)
	defer site.Stop()
	select {
	case <-site.HubSourced:
	case <-time.After(30 * time.Second):
		t.Fatal("the hub's FLEET does not source the site after 30s")
	}

	clock, _ := events.NewClock(events.ClockState{}, nil)
	res, err := events.Apply(ctx, hub, clock, "pi-01", fileManifest("g1"), "user:ops", nil)
	is.NoErr(err)
	got := &committed{ids: map[string]string{}}
	_, ready := authAgent(t, ctx, site.URL, credsPath, "pi-01", got)
	eventstest.WaitFor(t, 30*time.Second, "the agent Ready at the site with its device credentials", func() bool { return ready(res.Generation) })
	eventstest.WaitFor(t, 30*time.Second, "the site's events at the hub", func() bool {
		got.mu.Lock()
		ids := make(map[string]bool, len(got.ids))
		for id := range got.ids {
			ids[id] = true
		}
		got.mu.Unlock()
		for s, err := range hub.Read(ctx, events.Filter{Device: "pi-01"}) {
			if err == nil {
				delete(ids, s.ID)
			}
		}
		return len(ids) == 0
	})
	checkLogOnce(t, ctx, hub, got)

	// least privilege holds at the site
	copts, err := auth.ClientOptions(credsPath)
	is.NoErr(err)
	dnc, err := nats.Connect(site.URL, append(copts, quietNATS)...)
	is.NoErr(err)
	defer dnc.Close()
	djs, _ := jetstream.New(dnc)
	_, err = djs.Publish(ctx, events.LifecycleSubject("pi-02"), []byte("{}"))
	is.True(err != nil) // not as another device of the site
	_, err = nats.Connect(site.URL)
	is.True(err != nil) // and nobody without credentials

	// a site without the hub's auth cannot source the hub
	plain, err := (&SiteCmd{Hub: hubC.Nodes[0].LeafURL(), Domain: "shop-2", HubDomain: "hub", Data: t.TempDir(),
		Listen: "127.0.0.1:0", HeartbeatTTL: 30 * time.Second}).Start(ctx, nil)
	is.NoErr(err)
	defer plain.Stop()
	select {
	case <-plain.HubSourced:
		t.Fatal("a site without credentials sourced the hub")
	case <-time.After(3 * time.Second):
	}
}
