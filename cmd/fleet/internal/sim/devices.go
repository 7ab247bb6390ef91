package sim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// device is one simulated device: a real agent.Agent with its own NATS
// connection (and credentials with --auth), its own file root and state
// directory, and counters the simulator reads.
type device struct {
	id          string
	root, state string
	nc          *nats.Conn
	wire        *wireCounter
	h           *agent.Handle

	committed atomic.Int64 // events the agent committed to its outbox (its own count)
	mu        sync.Mutex
	batches   []int // sizes of the outbox batches the log acknowledged, in order
	record    atomic.Bool
}

func (d *device) onEvent(evs []events.Event) { d.committed.Add(int64(len(evs))) }

func (d *device) onPublished(n int) {
	if !d.record.Load() {
		return
	}
	d.mu.Lock()
	d.batches = append(d.batches, n)
	d.mu.Unlock()
}

// takeBatches returns the batch sizes recorded since the last call and stops
// recording.
func (d *device) takeBatches() []int {
	d.record.Store(false)
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.batches
	d.batches = nil
	return b
}

// wireCounter counts the bytes a connection reads and writes on its socket:
// everything on the wire, protocol and pings included (nats.Conn Statistics
// counts message payloads only).
type wireCounter struct{ in, out atomic.Int64 }

type countedConn struct {
	net.Conn
	w *wireCounter
}

func (c countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.w.in.Add(int64(n))
	return n, err
}

func (c countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.w.out.Add(int64(n))
	return n, err
}

// Dial implements nats.CustomDialer.
func (w *wireCounter) Dial(network, address string) (net.Conn, error) {
	c, err := net.DialTimeout(network, address, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return countedConn{Conn: c, w: w}, nil
}

// deviceID is the i-th simulated device's id.
func deviceID(i int) string { return fmt.Sprintf("sim-%05d", i) }

// startDevice connects device d and starts its agent with the product's
// defaults (heartbeat, manifest poll, drift interval, backoff), its file
// root under the simulation's memory-backed directory.
func startDevice(ctx context.Context, d *device, url string, authority *auth.Authority, logger *slog.Logger, agentOpts []agent.Option) error {
	for _, dir := range []string{d.root, d.state} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	d.wire = &wireCounter{}
	opts := append(agentcli.ConnectOptions(), nats.Name(d.id), nats.SetCustomDialer(d.wire))
	if authority != nil {
		creds, _, err := authority.AddDevice(d.id)
		if err != nil {
			return fmt.Errorf("credentials for %s: %w", d.id, err)
		}
		path := filepath.Join(d.state, "device.creds")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			return err
		}
		copts, err := auth.ClientOptions(path)
		if err != nil {
			return err
		}
		opts = append(opts, copts...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", d.id, err)
	}
	d.nc = nc
	all := append([]agent.Option{agent.WithRoot(d.root), agent.WithStateDir(d.state),
		agent.WithLabels(map[string]string{"sim": "true"}), agent.WithLogger(logger),
		agent.WithOnEvent(d.onEvent), agent.WithOnPublished(d.onPublished),
		// Its own store, on a file system in memory: no descriptors (one
		// on tmpfs holds eight), see the README.
		agent.WithStoreFS(vfs.NewMem())}, agentOpts...)
	h, err := agent.Start(ctx, nc, d.id, append(all, agent.WithLog(jsstore.NewLazy(nc)))...)
	if err != nil {
		nc.Close()
		return fmt.Errorf("start agent %s: %w", d.id, err)
	}
	d.h = h
	return nil
}

// parallel runs f for 0..n-1 with at most width at a time and returns the
// first error.
func parallel(n, width int, f func(i int) error) error {
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	sem := make(chan struct{}, width)
	for i := 0; i < n; i++ {
		if first.Load() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		}(i)
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}
