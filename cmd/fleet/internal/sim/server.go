package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// child is `fleet server` run as a child process: the embedded JetStream
// server and the projection service, in a process of their own so that
// their CPU and RSS can be read from /proc apart from the agents', and so
// that it can be killed with SIGKILL (the reconnect scenario).
type child struct {
	start  func(args ...string) *exec.Cmd
	data   string
	listen string
	auth   bool
	spawn  *spawner // nil: start from any thread

	cmd     *exec.Cmd
	exited  chan struct{}
	http    atomic.Pointer[string] // base URL of the HTTP API (changes on restart)
	NATSURL string
	Creds   string // operator credentials with --auth
}

// serverInfo is the first line `fleet server -o json` prints.
type serverInfo struct {
	NATS          string `json:"nats"`
	Dashboard     string `json:"dashboard"`
	OperatorCreds string `json:"operatorCreds"`
}

func newChild(start func(args ...string) *exec.Cmd, data string, auth bool, spawn *spawner) (*child, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pick a port for the server: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	return &child{start: start, data: data, listen: addr, auth: auth, spawn: spawn}, nil
}

// Start starts the server (again, on the same address and data) and waits
// until it has printed where it listens.
func (c *child) Start() error {
	args := []string{"server", "--data", c.data, "--listen", c.listen, "--http", "127.0.0.1:0", "-o", "json"}
	if c.auth {
		args = append(args, "--auth")
	}
	cmd := c.start(args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(c.data), "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stderr = logf
	started := cmd.Start
	if c.spawn != nil {
		started = func() error { return c.spawn.run(cmd.Start) } // at the original priority
	}
	if err := started(); err != nil {
		logf.Close()
		return fmt.Errorf("start fleet server: %w", err)
	}
	c.cmd = cmd
	c.exited = make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() {
		}
	}()
	go func() { _ = cmd.Wait(); logf.Close(); close(c.exited) }()
	select {
	case line, ok := <-lines:
		if !ok {
			return fmt.Errorf("fleet server exited before it was ready (see %s)", logf.Name())
		}
		var info serverInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			return fmt.Errorf("fleet server: unexpected first line %q: %w", line, err)
		}
		base := strings.TrimSuffix(info.Dashboard, "/")
		c.http.Store(&base)
		c.NATSURL, c.Creds = info.NATS, info.OperatorCreds
		return nil
	case <-time.After(60 * time.Second):
		c.Kill()
		return errors.New("fleet server: not ready after 60s")
	}
}

// HTTP is the base URL of the server's HTTP API.
func (c *child) HTTP() string {
	if p := c.http.Load(); p != nil {
		return *p
	}
	return ""
}

// Kill ends the server with SIGKILL and waits until it is gone.
func (c *child) Kill() { c.signal(syscall.SIGKILL) }

// Stop ends the server with SIGTERM (graceful) and waits until it is gone.
func (c *child) Stop() { c.signal(syscall.SIGTERM) }

func (c *child) signal(sig syscall.Signal) {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd = nil
}

// Usage reads the child's CPU time and resident memory from /proc.
func (c *child) Usage() (procUsage, error) {
	if c.cmd == nil {
		return procUsage{}, errors.New("server not running")
	}
	return readProc(c.cmd.Process.Pid)
}

// procUsage is a process's CPU time so far and its resident set.
type procUsage struct {
	At  time.Time
	CPU time.Duration
	RSS int64 // bytes
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

func readProc(pid int) (procUsage, error) {
	now := time.Now()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procUsage{}, err
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procUsage{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return procUsage{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	return procUsage{At: now, CPU: time.Duration(ut+st) * time.Second / clockTick, RSS: rss * int64(os.Getpagesize())}, nil
}

// cpuShare is the share of one core used between two readings.
func cpuShare(a, b procUsage) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return float64(b.CPU-a.CPU) / float64(wall)
}
