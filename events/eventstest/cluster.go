package eventstest

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The cluster harness runs real nats-server processes, built once per test
// process from the nats-server module fleet already requires (go build
// github.com/nats-io/nats-server/v2; the build cache makes it a link of a
// couple of seconds). Processes, not embedded servers, so that a test can
// kill a node with SIGKILL: an in-process Shutdown is always polite (it
// closes the store cleanly), which is not what a crash does.

var natsServer struct {
	once sync.Once
	path string
	err  error
}

// NATSServerBinary returns the path of a nats-server binary built from the
// module version in go.mod, building it on first use.
func NATSServerBinary(t testing.TB) string {
	t.Helper()
	natsServer.once.Do(func() {
		dir, err := os.MkdirTemp("", "fleet-nats-server-")
		if err != nil {
			natsServer.err = err
			return
		}
		natsServer.path = filepath.Join(dir, "nats-server")
		cmd := exec.Command("go", "build", "-o", natsServer.path, "github.com/nats-io/nats-server/v2")
		if out, err := cmd.CombinedOutput(); err != nil {
			natsServer.err = fmt.Errorf("build nats-server from the required module: %v: %s", err, out)
		}
	})
	if natsServer.err != nil {
		t.Fatal(natsServer.err)
	}
	return natsServer.path
}

// ClusterOptions shape a cluster.
type ClusterOptions struct {
	Name        string // cluster name; default "fleet"
	Domain      string // JetStream domain; empty for none
	Leafnodes   bool   // each node accepts leaf node connections
	RelaxedSync bool   // default: sync_interval always (fsync before ack)
	// Extra is appended to every node's configuration (such as fleet's
	// auth block, auth.Authority.NATSConfig).
	Extra string
}

// Node is one nats-server process of a cluster.
type Node struct {
	Name                                     string
	Dir                                      string // its store and its config
	ClientPort, ClusterPort, HTTPPort, LPort int
	conf                                     string
	cmd                                      *exec.Cmd
	exited                                   chan struct{}
	t                                        testing.TB
}

// Cluster is n nats-server processes routed to each other on loopback, each
// with its own store directory.
type Cluster struct {
	t     testing.TB
	Opts  ClusterOptions
	Nodes []*Node
}

// freePort returns a loopback port that was free a moment ago. Nodes keep
// their ports across restarts (routes name them), so -1 cannot be used.
func freePort(t testing.TB) int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// a port is closed again before the node binds it, so the kernel
		// may hand it out twice (a node's HTTP and route port were once
		// the same): never give one out twice in this process
		if !portsGiven[p] {
			portsGiven[p] = true
			return p
		}
	}
	t.Fatal("no free loopback port not given out before")
	return 0
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// StartCluster starts n nodes (n = 1 runs a single server, no routes) and
// waits until the JetStream meta group has a leader. Every node is stopped
// when the test ends.
func StartCluster(t testing.TB, n int, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Name == "" {
		o.Name = "fleet"
	}
	c := &Cluster{t: t, Opts: o}
	for i := range n {
		c.Nodes = append(c.Nodes, &Node{Name: fmt.Sprintf("n%d", i+1), Dir: t.TempDir(), t: t,
			ClientPort: freePort(t), ClusterPort: freePort(t), HTTPPort: freePort(t), LPort: freePort(t)})
	}
	for _, nd := range c.Nodes {
		nd.conf = filepath.Join(nd.Dir, "nats.conf")
		if err := os.WriteFile(nd.conf, []byte(c.config(nd)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.Stop)
	for _, nd := range c.Nodes {
		nd.Start()
	}
	c.WaitMetaLeader(30 * time.Second)
	return c
}

// config is the node's nats-server configuration: the settings of
// deploy/nats/cluster-node.conf, on loopback ports.
func (c *Cluster) config(nd *Node) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nhttp: 127.0.0.1:%d\nmax_payload: 2MB\n", nd.Name, nd.ClientPort, nd.HTTPPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n", filepath.Join(nd.Dir, "jetstream"))
	if !c.Opts.RelaxedSync {
		b.WriteString("  sync_interval: always\n")
	}
	if c.Opts.Domain != "" {
		fmt.Fprintf(&b, "  domain: %s\n", c.Opts.Domain)
	}
	b.WriteString("  limits { batch { max_inflight_per_stream: 1000, max_inflight_total: 1000 } }\n}\n")
	if len(c.Nodes) > 1 {
		var routes []string
		for _, o := range c.Nodes {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort))
		}
		fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: 127.0.0.1:%d\n  routes: [%s]\n  connect_retries: 120\n}\n",
			c.Opts.Name, nd.ClusterPort, strings.Join(routes, ", "))
	}
	if c.Opts.Leafnodes {
		// no_advertise: a leaf node behind a test's proxy must not learn
		// the real address and reconnect around a cut
		fmt.Fprintf(&b, "leafnodes {\n  listen: 127.0.0.1:%d\n  no_advertise: true\n}\n", nd.LPort)
	}
	b.WriteString(c.Opts.Extra)
	return b.String()
}

// URL is the node's client URL.
func (nd *Node) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", nd.ClientPort) }

// LeafURL is the node's leaf node URL (ClusterOptions.Leafnodes).
func (nd *Node) LeafURL() string { return fmt.Sprintf("nats-leaf://127.0.0.1:%d", nd.LPort) }

// Running reports whether the node's process is up.
func (nd *Node) Running() bool {
	if nd.cmd == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

// Start starts the node's process (again) on its store and ports and waits
// until it accepts clients.
func (nd *Node) Start() {
	nd.t.Helper()
	if nd.Running() {
		return
	}
	logf, err := os.OpenFile(filepath.Join(nd.Dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		nd.t.Fatal(err)
	}
	cmd := exec.Command(NATSServerBinary(nd.t), "-c", nd.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		nd.t.Fatal(err)
	}
	nd.cmd, nd.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); logf.Close(); close(done) }(nd.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.ClientPort), 100*time.Millisecond)
		if err == nil {
			conn.Close()
			return
		}
		if !nd.Running() || time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(nd.Dir, "server.log"))
			nd.t.Fatalf("nats-server %s did not come up on port %d: %s", nd.Name, nd.ClientPort, tail(log, 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the node's process with SIGKILL: no lame duck, no clean close
// of its store, as in a crash.
func (nd *Node) Kill() { nd.signal(syscall.SIGKILL) }

// Stop stops the node's process politely (SIGTERM).
func (nd *Node) Stop() { nd.signal(syscall.SIGTERM) }

func (nd *Node) signal(sig syscall.Signal) {
	if !nd.Running() {
		return
	}
	_ = nd.cmd.Process.Signal(sig)
	select {
	case <-nd.exited:
	case <-time.After(15 * time.Second):
		_ = nd.cmd.Process.Kill()
		<-nd.exited
	}
}

// Stop stops every node (SIGTERM); safe to call twice.
func (c *Cluster) Stop() {
	for _, nd := range c.Nodes {
		nd.Stop()
	}
}

// URLs is every node's client URL, comma separated (fleet's --nats).
func (c *Cluster) URLs() string {
	var u []string
	for _, nd := range c.Nodes {
		u = append(u, nd.URL())
	}
	return strings.Join(u, ",")
}

// Connect opens a client connection to the cluster that reconnects forever
// to whichever node is up.
func (c *Cluster) Connect(opts ...nats.Option) *nats.Conn {
	c.t.Helper()
	base := []nats.Option{nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectBufSize(-1), nats.Timeout(2 * time.Second)}
	nc, err := nats.Connect(c.URLs(), append(base, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// Node returns the node named name, or nil.
func (c *Cluster) Node(name string) *Node {
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// metaLeader asks a running node's monitoring endpoint who leads the
// JetStream meta group.
func (nd *Node) metaLeader() (leader string, peers int) {
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", nd.HTTPPort))
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	var jsz struct {
		Meta *struct {
			Leader   string `json:"leader"`
			Replicas []struct {
				Current bool `json:"current"`
			} `json:"replicas"`
		} `json:"meta_cluster"`
	}
	if json.NewDecoder(resp.Body).Decode(&jsz) != nil {
		return "", 0
	}
	if jsz.Meta == nil || len(jsz.Meta.Replicas) == 0 && jsz.Meta.Leader == "" {
		return nd.Name, 1 // a single server leads itself
	}
	for _, r := range jsz.Meta.Replicas {
		if r.Current {
			peers++
		}
	}
	return jsz.Meta.Leader, peers + 1
}

// WaitMetaLeader waits until every running node names the same running
// node as the JetStream meta leader and the leader sees every running node
// as a current peer (so that a stream of as many replicas can be placed),
// and returns it.
func (c *Cluster) WaitMetaLeader(timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, timeout, "a JetStream meta leader", func() bool {
		name, running := "", 0
		for _, nd := range c.Nodes {
			if !nd.Running() {
				continue
			}
			running++
			l, _ := nd.metaLeader()
			if l == "" || (name != "" && l != name) {
				return false
			}
			name = l
		}
		leader = c.Node(name)
		if leader == nil || !leader.Running() {
			return false
		}
		_, peers := leader.metaLeader()
		return peers >= running
	})
	return leader
}

// WaitStreamLeader waits until stream has a leader on a running node and
// every replica is current, and returns the leader.
func (c *Cluster) WaitStreamLeader(js jetstream.JetStream, stream string, timeout time.Duration) *Node {
	c.t.Helper()
	var leader *Node
	WaitFor(c.t, timeout, "a leader of stream "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		ci := s.CachedInfo().Cluster
		if ci == nil {
			leader = c.Nodes[0]
			return len(c.Nodes) == 1
		}
		leader = c.Node(ci.Leader)
		if leader == nil || !leader.Running() {
			return false
		}
		for _, r := range ci.Replicas { // the replicas on running nodes have caught up
			if nd := c.Node(r.Name); nd != nil && nd.Running() && !r.Current {
				return false
			}
		}
		return true
	})
	return leader
}

// Log returns the end of every node's server log (for a failing test).
func (c *Cluster) Log() string {
	var b strings.Builder
	for _, nd := range c.Nodes {
		log, _ := os.ReadFile(filepath.Join(nd.Dir, "server.log"))
		fmt.Fprintf(&b, "--- %s\n%s\n", nd.Name, tail(log, 3000))
	}
	return b.String()
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
