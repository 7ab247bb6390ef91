// Package eventstest starts real embedded JetStream servers for tests.
package eventstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// Env is a running server with a connection and the FLEET stream.
type Env struct {
	Server *embedded.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
	Store  *jsstore.Store
	Dir    string
}

// Start runs an embedded server on a free loopback port with its store in a
// temporary directory (fsync before ack unless relaxed), opens the stream, and
// stops everything when the test ends.
func Start(t testing.TB, relaxed bool) *Env {
	t.Helper()
	dir := t.TempDir()
	return StartIn(t, dir, relaxed)
}

// StartIn is Start with a given data directory (to restart a server on the same store).
func StartIn(t testing.TB, dir string, relaxed bool) *Env {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Dir: dir, RelaxedSync: relaxed})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.Connect()
	if err != nil {
		s.Stop()
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := jsstore.Open(context.Background(), js, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{Server: s, Conn: nc, JS: js, Store: st, Dir: dir}
	t.Cleanup(env.Stop)
	return env
}

// Stop closes the connection and shuts the server down; safe to call twice.
func (e *Env) Stop() {
	if e.Conn != nil {
		e.Conn.Close()
	}
	if e.Server != nil {
		e.Server.Stop()
	}
}

// WaitFor polls cond every 10ms until it holds, failing t with what was
// awaited once timeout passes. It waits for behaviour; it times nothing.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// LimitMessageSize makes the FLEET stream refuse messages larger than n
// bytes (the stream's answer: "message size exceeds maximum allowed").
func (e *Env) LimitMessageSize(t testing.TB, n int32) {
	t.Helper()
	ctx := context.Background()
	stream, err := e.JS.Stream(ctx, events.Stream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.MaxMsgSize = n
	if _, err := e.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// Attach connects to the server at url and attaches to its FLEET stream
// (the child process of a SIGKILL test, given the parent's server).
func Attach(t testing.TB, url string) *jsstore.Store {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := jsstore.Attach(context.Background(), js)
	if err != nil {
		t.Fatal(err)
	}
	return st
}
