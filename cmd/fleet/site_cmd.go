package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func init() {
	register("site", "Run a site: a NATS leaf node with its own JetStream domain that keeps working while the uplink is down.", "Control plane", &SiteCmd{})
}

// SiteCmd is `fleet site`.
type SiteCmd struct {
	Hub          string        `required:"" placeholder:"URL[,URL...]" help:"The hub's leaf node address(es), e.g. nats-leaf://hub-1:7422 (the hub servers' leafnodes listener)."`
	Domain       string        `required:"" placeholder:"NAME" help:"This site's JetStream domain (one subject token: letters, digits, '_' and '-'). Keep it for the site's life: the hub's source names it."`
	HubDomain    string        `default:"hub" placeholder:"NAME" help:"The hub's JetStream domain (jetstream { domain } in the hub's config)."`
	Data         string        `default:"./fleet-site" placeholder:"DIR" help:"Where the site's server keeps its store."`
	Listen       string        `default:"127.0.0.1:4222" placeholder:"ADDR" help:"Address the site's agents connect to (port 0 picks a free one)."`
	Devices      []string      `sep:"," placeholder:"ID,..." help:"The devices at this site; their manifests are brought here and their events go to the hub. Empty: every device (all manifests come to the site)."`
	RelaxedSync  bool          `help:"Acknowledge writes before fsync (faster, may lose the last acknowledged events on power loss)."`
	HeartbeatTTL time.Duration `default:"30s" help:"How long a device's heartbeat counts at the site."`
	Auth         string        `placeholder:"DIR" help:"Require credentials at the site: DIR is a copy of the hub's auth directory (DATA/auth of 'fleet server --auth'). Devices' credentials from 'fleet device add' are valid here; the site reaches the hub with DIR/operator.creds."`
	Output
}

// Help is shown by `fleet site --help`.
func (c *SiteCmd) Help() string {
	return `Runs an embedded NATS server at a site (a shop, a plant, a ship) as a leaf node of
the hub, with a JetStream domain of its own. The site's agents connect to it and
keep converging, correcting drift and storing their events durably at the site
while the uplink is down. JetStream sources tie the site to the hub: the site's
FLEET takes its devices' manifests from the hub's FLEET, and the hub's FLEET takes
the site's events, each once and in order, when the link is up. No copying of
fleet's own.

The hub needs a JetStream domain and a leafnodes listener (deploy/nats/ has the
configs); fleet site adds its source to the hub's FLEET itself, as soon as it
reaches the hub.

Examples:
  fleet site --hub nats-leaf://hub-1:7422,nats-leaf://hub-2:7422 --domain shop-12 \
    --data /var/lib/fleet-site --listen 0.0.0.0:4222 --devices pi-01,pi-02
  fleet agent --nats nats://site-host:4222 --device pi-01   # at the site
  fleet site --hub nats-leaf://hub-1:7422 --domain shop-12 --auth /etc/fleet/auth \
    --devices pi-01,pi-02                                  # credentials required
  fleet agent --nats nats://site-host:4222 --device pi-01 --creds pi-01.creds

With --auth, copy the hub's DATA/auth directory to the site once (it holds
the operator's credentials: keep it as secret as at the hub). The site joins
the hub's system account too (DIR/sys-user.creds), so a revocation, a
suspension or a reinstatement made at the hub reaches the site's server
within a second while the uplink is up: the device's connections at the
site are closed and new ones refused. The site keeps the account JWT it
last took in DATA/jwt: with the uplink down it goes on with it (through
restarts too, and says so), and a revocation made at the hub meanwhile
applies at the site only when the uplink is back (the site then asks the
hub for its account JWT). A site runs no rate guard for its devices.`
}

// RunningSite is a started `fleet site`.
type RunningSite struct {
	Server *embedded.Server
	Conn   *nats.Conn
	Store  *jsstore.Store // the site's FLEET
	URL    string
	// HubSourced is closed once the hub's FLEET sources the site.
	HubSourced chan struct{}
	// SourceRestarts counts the restarts of the sources across the leaf
	// link (keepSourcesAlive).
	SourceRestarts atomic.Int64
	cancel         context.CancelFunc
	done           chan struct{}
	auth           *siteAuthority // with --auth (site_auth.go)
	authDone       chan struct{}
}

// Run starts the site and blocks until ctx is done.
func (c *SiteCmd) Run(ctx context.Context, g *Globals) error {
	rs, err := c.Start(ctx, os.Stdout)
	if err != nil {
		return err
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "fleet site: stopping")
	rs.Stop()
	return nil
}

// hubURLs parses --hub.
func (c *SiteCmd) hubURLs() ([]*url.URL, error) {
	var out []*url.URL
	for _, s := range strings.Split(c.Hub, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "nats-leaf://" + s
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return nil, usagef("--hub %q: each address must be a URL such as nats-leaf://hub-1:7422", c.Hub)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, usagef("--hub: give the hub's leaf node address, such as nats-leaf://hub-1:7422")
	}
	return out, nil
}

// Start brings the site up and prints where to point its agents.
func (c *SiteCmd) Start(ctx context.Context, out *os.File) (*RunningSite, error) {
	if err := events.CheckID("--domain", c.Domain); err != nil {
		return nil, usagef("%v", err)
	}
	if err := events.CheckID("--hub-domain", c.HubDomain); err != nil {
		return nil, usagef("%v", err)
	}
	if c.Domain == c.HubDomain {
		return nil, usagef("--domain %q: must differ from the hub's domain (--hub-domain)", c.Domain)
	}
	for _, d := range c.Devices {
		if err := events.CheckID("--devices", d); err != nil {
			return nil, usagef("%v", err)
		}
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) {
		return nil, usagef("--listen %q: must be host:port with a port from 0 to 65535, such as 127.0.0.1:4222", c.Listen)
	}
	hub, err := c.hubURLs()
	if err != nil {
		return nil, err
	}
	configure, copts, sauth, err := c.siteAuth(hub)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Data, 0o755); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", c.Data, err)
	}
	srv, err := embedded.Start(embedded.Options{Dir: filepath.Join(c.Data, "jetstream"), Listen: c.Listen, RelaxedSync: c.RelaxedSync,
		Name: "fleet-site-" + c.Domain, Configure: configure})
	if err != nil {
		return nil, fmt.Errorf("%w (another server on %s? pick another with --listen)", err, c.Listen)
	}
	nc, err := srv.Connect(append(copts, nats.Name("fleet-site"), nats.MaxReconnects(-1))...)
	if err != nil {
		srv.Stop()
		return nil, err
	}
	fail := func(err error) (*RunningSite, error) { nc.Close(); srv.Stop(); return nil, err }
	js, err := jetstream.New(nc) // the site's own domain
	if err != nil {
		return fail(err)
	}
	st, err := jsstore.OpenSite(ctx, js, jsstore.Config{}, c.HubDomain, c.Devices)
	if err != nil {
		return fail(err)
	}
	if _, err := jsstore.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: events.HeartbeatBucket,
		Description: "fleet agent heartbeats at the site (not history)", TTL: c.HeartbeatTTL, Storage: jetstream.FileStorage, History: 1}); err != nil {
		return fail(err)
	}
	hubJS, err := jetstream.NewWithDomain(nc, c.HubDomain)
	if err != nil {
		return fail(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	rs := &RunningSite{Server: srv, Conn: nc, Store: st, URL: srv.URL(), HubSourced: make(chan struct{}), cancel: cancel, done: make(chan struct{}), auth: sauth}
	if sauth != nil {
		if err := rs.startAuth(sctx); err != nil {
			cancel()
			return fail(err)
		}
	}
	siteSrc := jsstore.SiteStreamConfig(jsstore.Config{}, c.HubDomain, c.Devices).Sources[0]
	go rs.sourceAtHub(sctx, hubJS, jsstore.HubSource(c.Domain, c.Devices), js, siteSrc)
	var authState *auth.AccountState // the account JWT the site starts with
	if sauth != nil {
		st, err := sauth.State()
		if err != nil {
			rs.Stop()
			return nil, err
		}
		authState = &st
	}
	if out != nil && c.JSON() {
		if err := json.NewEncoder(out).Encode(map[string]any{"nats": rs.URL, "domain": c.Domain, "hub": c.Hub,
			"hubDomain": c.HubDomain, "devices": c.Devices, "data": c.Data, "fsyncBeforeAck": !c.RelaxedSync, "auth": c.Auth != "", "accountJWT": authState}); err != nil {
			rs.Stop()
			return nil, err
		}
	} else if out != nil {
		fmt.Fprintf(out, "fleet site: domain %s, leaf node of %s (domain %s), data %s\n", c.Domain, c.Hub, c.HubDomain, c.Data)
		fmt.Fprintf(out, "  agents: fleet agent --nats %s --device ID\n", rs.URL)
		if authState != nil {
			fmt.Fprintf(out, "  credentials: the FLEET account JWT in force was %s (kept in %s; the hub's revocations arrive over the uplink)\n",
				authState, filepath.Join(c.Data, "jwt"))
		}
		fmt.Fprintln(out, "  Ctrl-C to stop")
	}
	return rs, nil
}

// siteServerOptions make the embedded server a leaf node of hub with its
// own JetStream domain. The agents' subjects never cross the link as
// plain messages: each FLEET takes the other's events through its sources
// only, so an event is stored once on each side and reaches the hub in the
// site's order (a site's event reaching the hub's FLEET directly would
// overtake the backlog the source is still bringing after an outage, and
// would lean on the duplicate window to be stored once). Manifest subjects do cross from the hub: they wake the agents
// (a hint; the agent reads its manifest from the site's FLEET).
func siteServerOptions(o *server.Options, domain string, hub []*url.URL) {
	o.JetStreamDomain = domain
	o.LeafNode.ReconnectInterval = time.Second
	o.LeafNode.Remotes = []*server.RemoteLeafOpts{{
		URLs:        hub,
		DenyExports: []string{events.AllSubjects},
		DenyImports: append(jsstore.AgentSubjects(nil), "$KV."+events.HeartbeatBucket+".>"),
	}}
}

// sourceAtHub adds the site's source to the hub's FLEET, retrying until
// the hub can be reached.
func (rs *RunningSite) sourceAtHub(ctx context.Context, hub jetstream.JetStream, src *jetstream.StreamSource, site jetstream.JetStream, siteSrc *jetstream.StreamSource) {
	defer close(rs.done)
	logged := false
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := jsstore.EnsureHubSource(actx, hub, src)
		cancel()
		if err == nil {
			close(rs.HubSourced)
			rs.keepSourcesAlive(ctx, []sourceAt{{"the hub's source of this site", hub, src}, {"this site's source of the hub's manifests", site, siteSrc}})
			return
		}
		if !logged && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "fleet site: the hub's FLEET does not source this site yet, retrying: %v\n", err)
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Source watch: how often the site looks, how long the link must be up
// and the hub's source silent before the site restarts it (the source's
// heartbeat is 1 s; a healthy source is heard from every second).
const (
	sourceCheckEvery = time.Second
	sourceSilentFor  = 3 * time.Second
)

// sourceAt is a stream's source across the leaf link.
type sourceAt struct {
	what string
	js   jetstream.JetStream // the FLEET that has the source
	src  *jetstream.StreamSource
}

// keepSourcesAlive restarts a source across the leaf link when the link is
// up and the source stays silent (jsstore.RestartSource): after an outage
// its server would otherwise take it up at its next backoff, up to minutes
// later.
func (rs *RunningSite) keepSourcesAlive(ctx context.Context, sources []sourceAt) {
	upSince := make([]time.Time, len(sources))
	t := time.NewTicker(sourceCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		up := rs.Server.NumLeafNodes() > 0
		for i, s := range sources {
			if !up {
				upSince[i] = time.Time{}
				continue
			}
			if upSince[i].IsZero() {
				upSince[i] = time.Now()
			}
			if time.Since(upSince[i]) < sourceSilentFor {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			active, err := jsstore.SourceActive(actx, s.js, s.src)
			if err == nil && (active < 0 || active > sourceSilentFor) {
				if err = jsstore.RestartSource(actx, s.js, s.src); err == nil {
					rs.SourceRestarts.Add(1)
					fmt.Fprintf(os.Stderr, "fleet site: %s was silent for %s with the uplink up: restarted it\n", s.what, active.Round(time.Second))
					upSince[i] = time.Now() // give it time to be heard from
				}
			}
			cancel()
		}
	}
}

// Stop stops the site's server.
func (rs *RunningSite) Stop() {
	rs.cancel()
	<-rs.done
	if rs.auth != nil {
		<-rs.authDone
		rs.auth.sys.Close()
	}
	rs.Conn.Close()
	rs.Server.Stop()
}
