package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alecthomas/kong"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/internal/hint"
)

func init() {
	register("server", "Run the control side: embedded durable JetStream, the stream, projections, API and dashboard.", "Control plane", &ServerCmd{})
}

// ServerCmd is `fleet server`.
type ServerCmd struct {
	Data         string        `default:"./fleet-data" placeholder:"DIR" help:"Where the embedded server keeps its store and the read models."`
	Listen       string        `default:"127.0.0.1:4222" placeholder:"ADDR" help:"Address agents and clients connect to (port 0 picks a free one)."`
	HTTP         string        `name:"http" default:"127.0.0.1:8080" placeholder:"ADDR" help:"Address of the HTTP API and dashboard; empty to turn it off."`
	RelaxedSync  bool          `help:"Acknowledge writes before fsync (faster, may lose the last acknowledged events on power loss)."`
	Replicas     int           `default:"1" help:"Stream replicas when using an existing cluster (--nats)."`
	HeartbeatTTL time.Duration `default:"3m" help:"How long a device's heartbeat counts before it is Stale (agents write one a minute by default)."`
	Auth         bool          `help:"Require credentials: per-device least privilege on NATS ('fleet device add'), a bearer token on the HTTP API and dashboard; keys and token under DIR/auth. With --nats: include DIR/auth/nats-auth.conf (written here) in every node's config."`
	// NoRolloutController: see server_rollouts.go
	NoRolloutController bool `help:"Do not run the rollout controller in this server (run 'fleet rollout controller' elsewhere; any number may run)."`
	ServerTLS
	ServerLimits   `embed:""` // retention flags (server_limits.go)
	RateGuardFlags `embed:""` // per-device rate limit (server_rateguard.go)
	Output

	// which of --nats and --listen were given on the command line (not from
	// the environment or defaults); set by AfterApply
	natsFlag, listenFlag bool
}

// AfterApply records which flags were given on the command line: only an
// explicit --nats makes the server a client of another NATS server;
// FLEET_NATS in the environment (meant for client commands) does not.
func (c *ServerCmd) AfterApply(kctx *kong.Context) error {
	c.natsFlag, c.listenFlag = false, false // the command value outlives a parse (tests run many in one process)
	for _, p := range kctx.Path {
		if p.Flag == nil {
			continue
		}
		switch p.Flag.Name {
		case "nats":
			c.natsFlag = true
		case "listen":
			c.listenFlag = true
		}
	}
	return nil
}

// external is the NATS URL the server attaches to instead of starting its
// embedded server, or "". --listen and --data always mean the embedded
// server: FLEET_NATS in the environment is ignored here (said on stderr),
// and an explicit --nats with --listen is a usage error naming both.
func (c *ServerCmd) external(g *Globals) (string, error) {
	switch {
	case c.natsFlag && c.listenFlag:
		return "", usagef("--nats %s and --listen %s conflict: --listen is the address of the embedded server, --nats uses an existing server instead; give one of them", g.NATS, c.Listen)
	case c.natsFlag:
		return g.NATS, nil
	case g.NATS != "" && os.Getenv("FLEET_NATS") == g.NATS:
		fmt.Fprintf(os.Stderr, "fleet server: FLEET_NATS=%s in the environment is ignored: the server runs its embedded NATS on --listen %s (to use an existing server, pass --nats)\n", g.NATS, c.Listen)
	}
	return "", nil
}

// Help is shown by `fleet server --help`.
func (c *ServerCmd) Help() string {
	return `Runs everything the control side needs in one process. On one machine the
JetStream server is embedded and fsyncs every write before acknowledging it;
with --nats it uses an existing server or cluster instead. --listen and
--data always mean the embedded server: FLEET_NATS in the environment (for
client commands) is ignored here, and --nats with --listen is refused.

Examples:
  fleet server                                  # embedded, data in ./fleet-data
  fleet server --data /var/lib/fleet --listen 0.0.0.0:4222 --http :8080
  fleet server --nats nats://nats-1:4222 --replicas 3
  fleet server --auth                           # credentials required; see 'fleet device --help'
  fleet server --nats nats://n1:4222,nats://n2:4222,nats://n3:4222 --replicas 3 --auth
                                                # nodes: include DATA/auth/nats-auth.conf
  fleet server --auth --tls-cert cert.pem --tls-key key.pem \
    --http-tls-cert cert.pem --http-tls-key key.pem   # NATS and HTTPS over TLS; clients: --tls-ca

With --auth the HTTP API and dashboard require the token in DATA/auth/http.token
(Authorization: Bearer TOKEN, or open /?token=TOKEN once in a browser);
/healthz and /metrics stay open.` + retentionHelp + rateGuardHelp
}

// ServerEnv is what a running server gives the parts that run inside it
// (projection service, HTTP API, dashboard). Parts register with addServerPart.
type ServerEnv struct {
	Conn         *nats.Conn
	JS           jetstream.JetStream
	Store        *jsstore.Store
	DataDir      string
	Mux          *http.ServeMux // nil when HTTP is off
	HTTPAddr     string
	NATSURL      string
	HeartbeatTTL time.Duration
	Health       *serverHealth    // checks for /healthz (server_health.go)
	Embedded     *embedded.Server // nil with --nats
	NoRollouts   bool             // --no-rollout-controller
	Auth         bool             // --auth: credentials required (reported by /healthz for 'fleet doctor')
	AuthDir      string           // DATA/auth with --auth, else ""
	RateGuard    RateGuardFlags
	stopErrs     stopErrors // what the parts could not do while stopping (server_stop.go)
}

// serverPart starts one part of the server; it runs until ctx is done and
// returns a function that stops it.
type serverPart struct {
	name  string
	start func(ctx context.Context, env *ServerEnv) (stop func(), err error)
}

var serverParts []serverPart

// addServerPart registers a part; called from a part's init.
func addServerPart(name string, start func(ctx context.Context, env *ServerEnv) (func(), error)) {
	serverParts = append(serverParts, serverPart{name, start})
}

// Run starts the server and blocks until ctx is done.
func (c *ServerCmd) Run(ctx context.Context, g *Globals) error {
	rs, err := c.Start(ctx, g, os.Stdout)
	if err != nil {
		return hint.PermissionDir(hint.InUse(err, c.Data, "--data"), c.Data, "--data", dataDirFix)
	}
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "fleet server: stopping")
	rs.Stop()
	if err := rs.StopError(); err != nil {
		return fmt.Errorf("stopped, but not cleanly: %w", err)
	}
	return nil
}

// RunningServer is a started `fleet server`.
type RunningServer struct {
	Env      *ServerEnv
	Embedded *embedded.Server // nil with --nats
	httpSrv  *http.Server
	stops    []func()
}

// Start brings the server up and prints where to point agents and browsers.
func (c *ServerCmd) Start(ctx context.Context, g *Globals, out *os.File) (*RunningServer, error) {
	rs := &RunningServer{}
	env := &ServerEnv{DataDir: c.Data, HeartbeatTTL: c.HeartbeatTTL, Health: &serverHealth{}, NoRollouts: c.NoRolloutController, Auth: c.Auth, RateGuard: c.RateGuardFlags}
	if _, err := c.RateGuardFlags.parse(); err != nil {
		return nil, err
	}
	// flags first: a refused command leaves nothing behind
	extURL, err := c.external(g)
	if err != nil {
		return nil, err
	}
	if c.TLSCert != "" && extURL != "" {
		return nil, usagef("--tls-cert configures the embedded server's client port: with --nats, configure TLS on your own servers (and give fleet --tls-ca)")
	}
	httpTLS, err := c.httpTLS()
	if err != nil {
		return nil, err
	}
	if _, err := loadPair("--tls-cert", c.TLSCert, "--tls-key", c.TLSKey); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.Data, 0o755); err != nil {
		return nil, hint.PermissionDir(fmt.Errorf("data directory %s: %w", c.Data, err), c.Data, "--data", dataDirFix)
	}
	var nc *nats.Conn
	var authDir string
	natsTLS := false
	if extURL != "" {
		var extra []nats.Option
		if c.Auth {
			if authDir, extra, err = externalAuth(c.Data, g); err != nil {
				return nil, err
			}
		}
		nc, err = g.Connect("fleet-server", extra...)
		if err != nil {
			if c.Auth {
				err = fmt.Errorf("%w (with --auth, every node's config must include %s)", err, filepath.Join(authDir, auth.NATSConfigFile))
			}
			return nil, err
		}
		env.NATSURL = extURL
	} else {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil || !validPort(port) {
			return nil, usagef("--listen %q: must be host:port with a port from 0 to 65535, such as 127.0.0.1:4222", c.Listen)
		}
		eo := embedded.Options{Dir: filepath.Join(c.Data, "jetstream"), Listen: c.Listen, RelaxedSync: c.RelaxedSync}
		var copts []nats.Option
		if c.Auth {
			if authDir, err = serverAuth(c.Data, &eo); err != nil {
				return nil, err
			}
			copts = append(copts, nats.UserCredentials(filepath.Join(authDir, "operator.creds")))
		}
		if natsTLS, err = c.natsTLS(&eo); err != nil {
			return nil, err
		}
		if err := listenFree(c.Listen); err != nil { // at once, not after the embedded server's 10 s start timeout
			return nil, err
		}
		srv, err := embedded.Start(eo)
		if err != nil {
			return nil, fmt.Errorf("%w (another server on %s? pick another with --listen)", err, c.Listen)
		}
		rs.Embedded = srv
		env.Embedded = srv
		rs.stops = append(rs.stops, srv.Stop)
		env.NATSURL = srv.URL()
		copts = append(copts, nats.Name("fleet-server"))
		if natsTLS { // the server's own parts connect in-process, where TLS has no use
			nc, err = nats.Connect("", append(copts, nats.InProcessServer(srv.Server))...)
		} else {
			nc, err = srv.Connect(copts...)
		}
		if err != nil {
			rs.Stop()
			return nil, err
		}
	}
	rs.stops = append(rs.stops, nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		rs.Stop()
		return nil, err
	}
	replicas := c.Replicas
	if replicas == 0 {
		replicas = 1
	}
	scfg, err := c.ServerLimits.streamConfig(replicas)
	if err != nil {
		rs.Stop()
		return nil, err
	}
	st, err := jsstore.Open(ctx, js, scfg)
	if err != nil {
		rs.Stop()
		return nil, err
	}
	// roll-ups refused: a device's put with Nats-Rollup would purge the others' heartbeats
	if _, err := auth.EnsureHeartbeatBucket(ctx, js, auth.HeartbeatBucketConfig{TTL: c.HeartbeatTTL, Replicas: replicas}); err != nil {
		rs.Stop()
		return nil, err
	}
	env.Conn, env.JS, env.Store, env.AuthDir = nc, js, st, authDir
	if c.HTTP != "" {
		env.Mux = http.NewServeMux()
	}
	for _, p := range serverParts {
		stop, err := p.start(ctx, env)
		if err != nil {
			rs.Stop()
			return nil, fmt.Errorf("start %s: %w", p.name, err)
		}
		if stop != nil {
			rs.stops = append(rs.stops, stop)
		}
	}
	var httpTokenPath string
	if env.Mux != nil {
		ln, err := net.Listen("tcp", c.HTTP)
		if err != nil {
			rs.Stop()
			return nil, fmt.Errorf("http on %s: %w (pick another with --http)", c.HTTP, err)
		}
		env.HTTPAddr = ln.Addr().String()
		h, tokenPath, err := httpAuth(authDir, env.Mux)
		if err != nil {
			ln.Close()
			rs.Stop()
			return nil, err
		}
		httpTokenPath = tokenPath
		rs.httpSrv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, TLSConfig: httpTLS}
		go func() {
			serve := rs.httpSrv.Serve
			if httpTLS != nil {
				serve = func(ln net.Listener) error { return rs.httpSrv.ServeTLS(ln, "", "") }
			}
			if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintln(os.Stderr, "fleet server: http:", err)
			}
		}()
	}
	rs.Env = env
	scheme := "http"
	if httpTLS != nil {
		scheme = "https"
	}
	if out != nil && c.JSON() {
		info := map[string]any{"nats": env.NATSURL, "stream": events.Stream, "data": c.Data,
			"embedded": rs.Embedded != nil, "fsyncBeforeAck": rs.Embedded != nil && !c.RelaxedSync, "auth": authDir != ""}
		info["tls"] = natsTLS
		if authDir != "" {
			info["operatorCreds"] = filepath.Join(authDir, "operator.creds")
		}
		if httpTokenPath != "" {
			info["httpToken"] = httpTokenPath
		}
		if env.HTTPAddr != "" {
			info["dashboard"] = scheme + "://" + env.HTTPAddr + "/"
		}
		enc := json.NewEncoder(out)
		if err := enc.Encode(info); err != nil {
			rs.Stop()
			return nil, err
		}
	} else if out != nil {
		fmt.Fprintf(out, "fleet server: NATS %s (stream %s", env.NATSURL, events.Stream)
		if rs.Embedded != nil {
			if c.RelaxedSync {
				fmt.Fprint(out, ", relaxed sync")
			} else {
				fmt.Fprint(out, ", fsync before ack")
			}
		}
		fmt.Fprintf(out, ", %s, data %s)\n", c.ServerLimits.describe(), c.Data)
		if natsTLS {
			fmt.Fprintf(out, "  agents:    fleet agent --nats %s --tls-ca CA.pem --device ID (TLS: the CA of %s)\n", env.NATSURL, c.TLSCert)
		} else {
			fmt.Fprintf(out, "  agents:    fleet agent --nats %s --device ID\n", env.NATSURL)
		}
		if authDir != "" {
			fmt.Fprintf(out, "  auth:      on; operator credentials %s\n", filepath.Join(authDir, "operator.creds"))
			fmt.Fprintf(out, "             devices: fleet device add ID --data %s (then the agent's --creds)\n", c.Data)
		}
		if env.HTTPAddr != "" {
			fmt.Fprintf(out, "  dashboard: %s://%s/\n", scheme, env.HTTPAddr)
		}
		if httpTokenPath != "" {
			fmt.Fprintf(out, "  http auth: token in %s: 'Authorization: Bearer TOKEN', or open %s://%s/?token=TOKEN once in a browser\n", httpTokenPath, scheme, env.HTTPAddr)
		}
		fmt.Fprintln(out, "  Ctrl-C to stop")
	}
	return rs, nil
}

// Stop stops every part in reverse order; StopError says what a part could
// not do (logged as it happened).
func (rs *RunningServer) Stop() {
	if rs.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = rs.httpSrv.Shutdown(ctx)
		cancel()
	}
	for i := len(rs.stops) - 1; i >= 0; i-- {
		rs.stops[i]()
	}
	rs.stops = nil
}

// StopError is what the parts could not do while stopping (nil: nothing).
func (rs *RunningServer) StopError() error {
	if rs.Env == nil {
		return nil
	}
	return rs.Env.stopErrs.err()
}

// validPort reports whether p is a TCP port number (0: any free one).
func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535
}

// dataDirFix is what to do about a data directory the server may not write.
const dataDirFix = "under systemd the unit's StateDirectory=fleet gives the server /var/lib/fleet (deploy/systemd/fleet-server.service)"
