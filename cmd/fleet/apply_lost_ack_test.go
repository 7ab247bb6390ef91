package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// ackLoser is a loopback TCP proxy in front of a real NATS server that
// loses one acknowledgement: after it has passed a client's publish on the
// watched subject to the server, it drops the server's next answer and cuts
// the connection, so the server has stored the message and the client never
// hears of it. With dead set it then refuses every new connection, as a
// server that died right after storing would.
type ackLoser struct {
	ln      net.Listener
	target  string
	subject []byte

	mu       sync.Mutex
	armed    bool // lose the answer to the next publish on subject
	dieAfter bool // and then refuse connections
	dead     bool // refusing connections
	lost     int  // answers lost
}

func newAckLoser(t *testing.T, target, subject string) *ackLoser {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &ackLoser{ln: ln, target: strings.TrimPrefix(target, "nats://"), subject: []byte("PUB " + subject + " ")}
	t.Cleanup(func() { ln.Close() })
	go p.accept()
	return p
}

func (p *ackLoser) URL() string { return "nats://" + p.ln.Addr().String() }

func (p *ackLoser) arm(dieAfter bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed, p.dieAfter = true, dieAfter
}

func (p *ackLoser) revive() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = false
}

func (p *ackLoser) state() (lost int, dead bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lost, p.dead
}

func (p *ackLoser) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if _, dead := p.state(); dead {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		go p.serve(c, s)
	}
}

func (p *ackLoser) serve(client, server net.Conn) {
	var mu sync.Mutex
	published := false // the watched publish went through on this connection
	cut := func() { client.Close(); server.Close() }
	go func() { // client -> server
		defer cut()
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				p.mu.Lock()
				if p.armed && bytes.Contains(buf[:n], p.subject) { // HPUB carries the Nats-Msg-Id
					p.armed = false
					mu.Lock()
					published = true
					mu.Unlock()
				}
				p.mu.Unlock()
				if _, werr := server.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer cut()
	buf := make([]byte, 64<<10)
	for { // server -> client
		n, err := server.Read(buf)
		mu.Lock()
		lose := published && n > 0
		mu.Unlock()
		if lose { // the server answered the publish: it stored it; the answer is lost
			p.mu.Lock()
			p.lost++
			p.dead = p.dieAfter
			p.mu.Unlock()
			return
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// manifestsOf returns the ManifestApplied events of device on the log.
func manifestsOf(t *testing.T, env *eventstest.Env, device string) []events.Stored {
	t.Helper()
	var out []events.Stored
	for st, err := range env.Store.Read(context.Background(), events.Filter{Device: device, Types: []string{events.TypeManifestApplied}}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
	}
	return out
}

// TestApplyWhoseAckIsLostIsStoredOnce: the server stores a manifest and its
// acknowledgement is lost (a proxy in front of the real server cuts the link
// right after the server answered). `fleet apply` retries with the same event
// id, the stream's dedup stores it once, and the command reports generation
// 1. A plain re-run of the same apply writes nothing and says which
// generation holds it; another manifest is generation 2.
func TestApplyWhoseAckIsLostIsStoredOnce(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	proxy := newAckLoser(t, env.Server.URL(), events.ManifestSubject("ack-01"))
	manifest := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	t.Setenv("FLEET_ACTOR", "ops")

	proxy.arm(false)
	out, code := replayCLI(t, "apply", "-f", manifest, "--device", "ack-01", "--nats="+proxy.URL())
	lost, _ := proxy.state()
	is.Equal(lost, 1) // the server's answer to the publish was lost
	is.Equal(code, 0)
	is.True(strings.Contains(out, "generation 1 applied"))
	ms := manifestsOf(t, env, "ack-01")
	is.Equal(len(ms), 1) // stored once, though sent twice

	out, code = replayCLI(t, "apply", "-f", manifest, "--device", "ack-01", "--nats="+env.Server.URL())
	is.Equal(code, 0)
	is.True(strings.Contains(out, "already applied as generation 1")) // out
	is.Equal(len(manifestsOf(t, env, "ack-01")), 1)

	other := filepath.Join(t.TempDir(), "other.yaml")
	is.NoErr(os.WriteFile(other, []byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"other\\n\"}\n"), 0o644))
	out, code = replayCLI(t, "apply", "-f", other, "--device", "ack-01", "--nats="+env.Server.URL())
	is.Equal(code, 0)
	is.True(strings.Contains(out, "generation 2 applied"))
	is.Equal(len(manifestsOf(t, env, "ack-01")), 2)
}

// TestApplyWithNoAnswerSaysWhatToCheckAndReRunIsSafe: the server stores the
// manifest and then is gone for good (the proxy loses the answer and refuses
// every reconnection). `fleet apply` fails after its retries with an error
// that says the manifest may be stored, how to check and that a re-run is
// safe. When the server is back, re-running the same apply finds generation
// 1 and writes no second one.
func TestApplyWithNoAnswerSaysWhatToCheckAndReRunIsSafe(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	proxy := newAckLoser(t, env.Server.URL(), events.ManifestSubject("ack-02"))
	manifest := filepath.Join("..", "..", "fixtures", "manifests", "basic.yaml")
	t.Setenv("FLEET_ACTOR", "ops")

	proxy.arm(true)
	cmd := &ApplyCmd{File: manifest, Device: "ack-02"}
	err := cmd.Run(context.Background(), &Globals{NATS: proxy.URL()})
	is.True(err != nil)
	var unknown *events.OutcomeUnknownError
	is.True(errors.As(err, &unknown))
	is.True(errors.Is(err, events.ErrUnavailable))
	is.Equal(exitCode(err), 1)
	for _, want := range []string{"may be stored", "fleet get device ack-02", "re-running the same 'fleet apply' is safe"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	is.Equal(len(manifestsOf(t, env, "ack-02")), 1) // it was stored

	proxy.revive()
	out, code := replayCLI(t, "apply", "-f", manifest, "--device", "ack-02", "--nats="+proxy.URL(), "-o", "json")
	is.Equal(code, 0)
	is.True(strings.Contains(out, `"alreadyApplied": true`))
	is.True(strings.Contains(out, `"generation": 1`))
	is.Equal(len(manifestsOf(t, env, "ack-02")), 1)
}
