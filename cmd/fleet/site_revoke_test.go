package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// siteDevice is a device's own connection at a site, with its credentials.
type siteDevice struct {
	id     string
	nc     *nats.Conn
	closed atomic.Int64 // unix nanos when the server closed it (0: open)
}

// connectDevice connects device id at url with its credentials file; the
// connection does not reconnect, so a close by the server is seen as one.
func connectDevice(t *testing.T, url, id, creds string) (*siteDevice, error) {
	t.Helper()
	copts, err := auth.ClientOptions(creds)
	if err != nil {
		t.Fatal(err)
	}
	d := &siteDevice{id: id}
	nc, err := nats.Connect(url, append(copts, quietNATS, nats.NoReconnect(), nats.Timeout(2*time.Second),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { d.closed.CompareAndSwap(0, time.Now().UnixNano()) }))...)
	if err != nil {
		return nil, err
	}
	d.nc = nc
	t.Cleanup(nc.Close)
	return d, nil
}

// publish stores one lifecycle event of the device at the site (acknowledged
// by the site's FLEET).
func (d *siteDevice) publish(ctx context.Context) error {
	js, err := jetstream.New(d.nc)
	if err != nil {
		return err
	}
	id := ulid.Make().String()
	b, err := events.Encode(events.Event{ID: id, Type: events.TypeDeviceRegistered, Schema: 1, Device: d.id,
		At: time.Now().UTC(), Actor: "agent:" + d.id, Data: json.RawMessage(`{}`)})
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = js.Publish(pctx, events.LifecycleSubject(d.id), b, jetstream.WithMsgID(id))
	return err
}

// TestSiteRevocationReachesTheSiteWhileTheUplinkIsUp: a hub (nats-server
// process with fleet's auth) and `fleet site --auth` behind a proxy the test
// cuts. With the uplink up, a revocation, a suspension (what the server's
// rate guard does: auth.SuspendDevice and a push) and a reinstatement made
// at the hub reach the site within seconds: the device's connection at the
// site is closed by the site's server, it cannot connect or publish there,
// and reinstated it publishes again. With the uplink cut the site goes on
// with the account JWT it had, through a restart too (the revocation taken
// before the cut holds although the site's copy of the auth directory
// predates it); a revocation made at the hub during the cut applies at the
// site within seconds of the uplink's return.
func TestSiteRevocationReachesTheSiteWhileTheUplinkIsUp(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end site run")
	}
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data, a, hubC, _ := authHub(ctx, t)
	hubSys := hubC.Connect(nats.UserCredentials(a.SystemCredsPath()))
	push := func(tok string) time.Time { // when the push was sent
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		sent := time.Now()
		is.NoErr(auth.Push(pctx, hubSys, tok))
		return sent
	}
	creds := map[string]string{}
	for _, id := range []string{"pi-01", "pi-02", "pi-03", "pi-04"} {
		c, _, err := a.AddDevice(id)
		is.NoErr(err)
		creds[id] = filepath.Join(t.TempDir(), id+".creds")
		is.NoErr(os.WriteFile(creds[id], c, 0o600))
	}
	siteAuth := filepath.Join(t.TempDir(), "auth") // the copy taken to the site, before any revocation
	is.NoErr(os.CopyFS(siteAuth, os.DirFS(filepath.Join(data, "auth"))))

	proxy := eventstest.StartProxy(t, strings.TrimPrefix(hubC.Nodes[0].LeafURL(), "nats-leaf://"))
	siteCmd := &SiteCmd{Hub: "nats-leaf://" + proxy.Addr(), Domain: "shop-1", HubDomain: "hub", Data: t.TempDir(),
		Listen: "127.0.0.1:0", Devices: []string{"pi-01", "pi-02", "pi-03", "pi-04"}, HeartbeatTTL: 30 * time.Second, Auth: siteAuth}
	site, err := siteCmd.Start(ctx, nil)
	is.NoErr(err)
	defer func() { site.Stop() }()
	select {
	case <-site.HubSourced:
	case <-time.After(30 * time.Second):
		t.Fatal("the hub's FLEET does not source the site after 30s")
	}
	eventstest.WaitFor(t, 30*time.Second, "the site's system-account link to the hub", site.sysLinkUp)

	devs := map[string]*siteDevice{}
	for _, id := range []string{"pi-01", "pi-02", "pi-03", "pi-04"} {
		d, err := connectDevice(t, site.URL, id, creds[id])
		is.NoErr(err)
		is.NoErr(d.publish(ctx))
		devs[id] = d
	}
	// reaches: how long from the push at the hub to the device's connection
	// at the site closed by the site's server, and it then cannot connect.
	reaches := func(what, id string, pushed time.Time) time.Duration {
		t.Helper()
		d := devs[id]
		eventstest.WaitFor(t, 15*time.Second, what+": "+id+"'s connection at the site closed", func() bool { return d.closed.Load() != 0 })
		took := time.Unix(0, d.closed.Load()).Sub(pushed)
		_, err := connectDevice(t, site.URL, id, creds[id])
		is.True(err != nil) // refused at the site
		t.Logf("%s of %s at the hub reached the site in %s", what, id, took)
		return took
	}

	// revocation, uplink up
	tok, _, err := a.RevokeDevice("pi-01")
	is.NoErr(err)
	took := reaches("revocation", "pi-01", push(tok))
	is.True(took < 5*time.Second)
	is.NoErr(devs["pi-02"].publish(ctx)) // the others go on

	// suspension (the rate guard's path) and reinstatement, uplink up
	tok, _, err = a.SuspendDevice("pi-02", time.Now().Add(time.Hour), "test: over its rate")
	is.NoErr(err)
	took = reaches("suspension", "pi-02", push(tok))
	is.True(took < 5*time.Second)
	tok, _, err = a.ReinstateDevice("pi-02")
	is.NoErr(err)
	pushed := push(tok)
	var back *siteDevice
	eventstest.WaitFor(t, 15*time.Second, "pi-02 reinstated connects at the site again", func() bool {
		back, err = connectDevice(t, site.URL, "pi-02", creds["pi-02"])
		return err == nil
	})
	t.Logf("reinstatement of pi-02 at the hub reached the site in %s", time.Since(pushed))
	is.NoErr(back.publish(ctx))
	devs["pi-02"] = back

	// uplink cut: the site goes on with what it had, through a restart
	proxy.Cut()
	eventstest.WaitFor(t, 15*time.Second, "the site sees the uplink down", func() bool { return !site.sysLinkUp() })
	tok, _, err = a.RevokeDevice("pi-03")
	is.NoErr(err)
	push(tok) // the hub refuses pi-03 from now on; the site cannot know yet
	is.NoErr(devs["pi-03"].publish(ctx))
	is.NoErr(devs["pi-04"].publish(ctx))
	before, err := site.AuthState()
	is.NoErr(err)
	site.Stop()
	site, err = siteCmd.Start(ctx, nil)
	is.NoErr(err)
	after, err := site.AuthState()
	is.NoErr(err)
	is.Equal(after, before) // the JWT it took live, not its older copy of the auth directory
	_, err = connectDevice(t, site.URL, "pi-01", creds["pi-01"])
	is.True(err != nil) // still revoked at the site after a restart with the uplink down
	for _, id := range []string{"pi-02", "pi-03", "pi-04"} {
		d, err := connectDevice(t, site.URL, id, creds[id])
		is.NoErr(err)
		is.NoErr(d.publish(ctx))
		devs[id] = d
	}

	// uplink back: the revocation made during the cut reaches the site
	restored := time.Now()
	proxy.Restore()
	took = reaches("revocation made during the cut", "pi-03", restored)
	t.Logf("(from the uplink's return)")
	is.NoErr(devs["pi-04"].publish(ctx))
	st, err := site.AuthState()
	is.NoErr(err)
	hubTok, err := a.AccountJWT()
	is.NoErr(err)
	want, err := a.StateOf(hubTok)
	is.NoErr(err)
	is.Equal(st, want)
}

// TestSiteKeepsItsNewerAccountJWTOverAnOlderOfTheSameSecond: the site's
// resolver holds a JWT it took live (revision 3); the auth directory's
// older copy (revision 1), most likely of the same second, is not stored
// over it, as nats-server's resolver alone would (it compares seconds);
// a newer one is.
func TestSiteKeepsItsNewerAccountJWTOverAnOlderOfTheSameSecond(t *testing.T) {
	is := is.New(t)
	a, err := auth.Open(t.TempDir())
	is.NoErr(err)
	_, _, err = a.AddDevice("pi-01")
	is.NoErr(err)
	old, err := a.AccountJWT()
	is.NoErr(err)
	_, _, err = a.SuspendDevice("pi-01", time.Now().Add(time.Hour), "test")
	is.NoErr(err)
	live, _, err := a.RevokeDevice("pi-01")
	is.NoErr(err)
	res, err := server.NewDirAccResolver(t.TempDir(), 0, time.Minute, server.NoDelete)
	is.NoErr(err)
	defer res.Close()
	pub := a.AccountPublicKey()
	is.NoErr(storeIfNewer(a, res, pub, live))
	is.NoErr(storeIfNewer(a, res, pub, old))
	kept, err := res.LoadAcc(pub)
	is.NoErr(err)
	is.True(kept == live)                    // not the older copy
	newer, _, err := a.RevokeDevice("pi-01") // revoking again signs a newer JWT
	is.NoErr(err)
	is.NoErr(storeIfNewer(a, res, pub, newer))
	kept, err = res.LoadAcc(pub)
	is.NoErr(err)
	is.True(kept == newer)
}
