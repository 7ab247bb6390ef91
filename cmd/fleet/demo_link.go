package main

import (
	"io"
	"net"
	"sync"
)

// demoLink is a device's network link to the NATS server in `fleet demo`: a
// TCP relay on a free local port that can be cut (every connection dropped,
// new ones refused) and restored, so a device can go offline for real while
// its agent keeps running. Safe for concurrent use.
type demoLink struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newDemoLink relays a free port on 127.0.0.1 to target (host:port).
func newDemoLink(target string) (*demoLink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &demoLink{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// URL is the NATS URL the device connects to.
func (l *demoLink) URL() string { return "nats://" + l.ln.Addr().String() }

func (l *demoLink) serve() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		down := l.down
		l.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns[c], l.conns[up] = struct{}{}, struct{}{}
		l.mu.Unlock()
		l.wg.Add(2)
		go l.pipe(c, up)
		go l.pipe(up, c)
	}
}

func (l *demoLink) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
	l.mu.Lock()
	delete(l.conns, dst)
	delete(l.conns, src)
	l.mu.Unlock()
}

// Cut takes the device offline: open connections are dropped and new ones
// refused until Restore.
func (l *demoLink) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.conns {
		c.Close()
	}
}

// Restore brings the device back online.
func (l *demoLink) Restore() {
	l.mu.Lock()
	l.down = false
	l.mu.Unlock()
}

// Close stops the relay and drops its connections.
func (l *demoLink) Close() {
	l.ln.Close()
	l.Cut()
	l.wg.Wait()
}
