package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/internal/hint"
)

// DefaultNATS is where client commands look for the server.
const DefaultNATS = "nats://127.0.0.1:4222"

// Globals are the flags every command takes.
type Globals struct {
	NATS  string `name:"nats" env:"FLEET_NATS" placeholder:"URL" help:"NATS server to use (default ${default_nats})."`
	Creds string `name:"creds" env:"FLEET_CREDS" placeholder:"FILE" help:"NATS credentials file (from 'fleet device add' or your operator)."`
	TLSCA string `name:"tls-ca" env:"FLEET_TLS_CA" placeholder:"FILE" help:"Connect to NATS over TLS, trusting the server certificates of this CA (PEM; for 'fleet server --tls-cert')."`
}

// URL returns the NATS URL a client command connects to.
func (g *Globals) URL() string {
	if g.NATS == "" {
		return DefaultNATS
	}
	return g.NATS
}

// Connect opens a NATS connection named name, with the credentials if given.
func (g *Globals) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}
	if g.Creds != "" {
		copts, err := auth.ClientOptions(g.Creds) // a device's creds also set its inbox prefix
		if err != nil {
			return nil, hint.Permission(err, g.Creds, "--creds", hint.CredsFix)
		}
		opts = append(opts, copts...)
	}
	topts, err := auth.TLSOptions(g.TLSCA)
	if err != nil {
		return nil, err
	}
	opts = append(opts, topts...)
	opts = append(opts, extra...)
	nc, err := nats.Connect(g.URL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w (start a server with 'fleet server', or point --nats / FLEET_NATS at one)", g.URL(), err)
	}
	return nc, nil
}

// Store connects and attaches to the FLEET stream.
func (g *Globals) Store(ctx context.Context, name string) (*nats.Conn, *jsstore.Store, error) {
	nc, err := g.Connect(name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	st, err := jsstore.Attach(ctx, js)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("%w (is 'fleet server' running at %s?)", err, g.URL())
	}
	return nc, st, nil
}

// operator names the person running a command, for the actor field:
// user:$FLEET_ACTOR if set (refused unless it follows events.ActorRule),
// else user: and the login name, any character the rule does not allow
// replaced by '_'.
func operator() (string, error) {
	if n := os.Getenv("FLEET_ACTOR"); n != "" {
		if err := events.CheckActor("user:" + n); err != nil {
			return "", fmt.Errorf("FLEET_ACTOR names you in the log as user:$FLEET_ACTOR: %w (unset it to use your login name)", err)
		}
		return "user:" + n, nil
	}
	if u, err := user.Current(); err == nil {
		return "user:" + events.ActorName(u.Username), nil
	}
	return "user:unknown", nil
}
