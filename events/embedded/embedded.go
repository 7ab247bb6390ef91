// Package embedded runs fleet's NATS JetStream server inside the process: the
// default on one machine (`fleet server`, `fleet demo`) and in tests. Only
// cmd/fleet and tests import it, so agents built alone link no server.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options configures an embedded server.
type Options struct {
	// Dir holds the JetStream file store. Required: an empty store dir would
	// silently become a shared temporary folder.
	Dir string
	// Listen is host:port for clients; port 0 or -1 picks a free port.
	// Empty means 127.0.0.1 with a free port.
	Listen string
	// NoListen accepts in-process connections only.
	NoListen bool
	// RelaxedSync acknowledges writes before they are fsynced (the server's
	// default, fsync every 2 minutes). Off by default: fleet fsyncs every
	// write before acknowledging it, since an audit log must not forget.
	RelaxedSync bool
	// Configure, if set, adjusts the server options last (auth, for example).
	Configure func(*server.Options)
	// Name of the server; default "fleet".
	Name string
	// Logger receives the server's own log: notices at Info, warnings at
	// Warn, errors at Error (debug and trace stay off). Nil: slog.Default()
	// at Warn and above, so that a damaged store or a full disk is never
	// silent.
	Logger *slog.Logger
	// MinFree is the free space (bytes) the store's disk must have to be
	// healthy and before JetStream starts again after a full disk; 0:
	// DefaultMinFree.
	MinFree int64
	// RecoverEvery is how often a server whose disk filled checks for
	// space to start JetStream again; 0: every second.
	RecoverEvery time.Duration
}

// maxBatchInflight is how many atomic batches may be open at once on a
// stream (and on the server); the nats-server defaults are 50 and 1,000.
const maxBatchInflight = 1000

// Server is a running embedded server.
type Server struct {
	*server.Server
	opts     Options
	log      *logger
	disk     *diskState
	jsConfig server.JetStreamConfig // as first started, to start it again (disk.go)
	quit     chan struct{}
	stopOnce sync.Once
}

// Start starts a server and waits until it accepts connections.
func Start(o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("embedded server: a data directory is required")
	}
	so := &server.Options{
		ServerName: o.Name,
		JetStream:  true,
		StoreDir:   o.Dir,
		NoSigs:     true,
		NoLog:      true,
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		MaxPayload: 2 << 20,
	}
	if so.ServerName == "" {
		so.ServerName = "fleet"
	}
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded server: listen %q: must be host:port: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded server: listen %q: port must be a number", o.Listen)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		so.Host, so.Port = host, p
	}
	if o.NoListen {
		so.DontListen = true
	}
	// Every agent drains its outbox in atomic batches: with a fleet
	// rolling out at once, the default of 50 open batches a stream made
	// drains wait (429 "too many inflight"; fleet sim, BENCHMARKS.md).
	so.JetStreamLimits.MaxBatchInflightPerStream = maxBatchInflight
	so.JetStreamLimits.MaxBatchInflightTotal = maxBatchInflight
	if !o.RelaxedSync {
		so.SyncAlways = true
		so.SyncInterval = 2 * time.Minute
	}
	if o.Configure != nil {
		o.Configure(so)
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	disk := &diskState{}
	lg := newLogger(o.Logger)
	lg.problem = disk.noteProblem
	s.SetLoggerV2(lg, false, false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded server: not ready after 10s (is %s:%d free?)", so.Host, so.Port)
	}
	es := &Server{Server: s, opts: o, log: lg, disk: disk, quit: make(chan struct{})}
	if c := s.JetStreamConfig(); c != nil {
		es.jsConfig = *c
	}
	every := o.RecoverEvery
	if every <= 0 {
		every = time.Second
	}
	go es.watchDisk(every)
	return es, nil
}

// URL is the address agents and clients connect to.
func (s *Server) URL() string { return s.ClientURL() }

// Connect opens a client connection: in-process when the server does not
// listen, else over loopback TCP.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if s.opts.NoListen {
		opts = append(opts, nats.InProcessServer(s.Server))
		return nats.Connect("", opts...)
	}
	return nats.Connect(s.ClientURL(), opts...)
}

// Stop shuts the server down and waits until it has.
func (s *Server) Stop() {
	s.stopOnce.Do(func() { close(s.quit) })
	s.Shutdown()
	s.WaitForShutdown()
}
