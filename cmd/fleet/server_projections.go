package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
)

func init() {
	addServerPart("projections", func(ctx context.Context, env *ServerEnv) (func(), error) {
		p, err := startProjections(ctx, env.Conn, env.JS, filepath.Join(env.DataDir, "projections"),
			projections.DefaultDurable, env.HeartbeatTTL, env.Mux)
		if err != nil {
			return nil, err
		}
		if env.Health != nil {
			env.Health.attach(p.API)
		}
		return func() { p.Stop(); env.stopErrs.add(p.closeErr) }, nil
	})
}

// runningProjections is a projection service with its micro service and HTTP routes.
type runningProjections struct {
	Svc      *projections.Service
	API      *api.Server
	cancel   context.CancelFunc
	done     chan error
	stopMS   func() error
	closeErr error // the store's, once stopped
}

// startProjections opens the read models in dir, consumes the stream with
// the durable consumer durable, serves the micro service on nc and, if mux
// is not nil, the HTTP API.
func startProjections(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, dir, durable string, ttl time.Duration, mux *http.ServeMux, opts ...projections.Option) (*runningProjections, error) {
	svc, err := projections.Open(dir, append([]projections.Option{projections.WithDurable(durable)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if r := svc.Recovered(); r != "" {
		fmt.Fprintln(os.Stderr, "fleet server:", r)
	}
	ctx, cancel := context.WithCancel(ctx)
	store, err := jsstore.Attach(ctx, js)
	if err != nil {
		cancel()
		svc.Close()
		return nil, err
	}
	a := api.NewServer(svc, store, ttl, api.WithRebuild(func(ctx context.Context) error { return svc.Rebuild(ctx, store, nil) }),
		api.WithHolds((&rollouts.Reader{Log: store}).HeldBy)) // GET /api/devices/{id} says which rollout holds it
	if err := a.Start(ctx); err != nil {
		cancel()
		svc.Close()
		return nil, err
	}
	ms, err := a.AddMicro(nc)
	if err != nil {
		cancel()
		svc.Close()
		return nil, err
	}
	if mux != nil {
		a.Routes(mux)
	}
	p := &runningProjections{Svc: svc, API: a, cancel: cancel, done: make(chan error, 1), stopMS: ms.Stop}
	go func() {
		err := svc.Run(ctx, store)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet: projections:", err)
		}
		p.done <- err
	}()
	return p, nil
}

// Stop stops consuming and serving and closes the store; closeErr is then
// the store's error (on a full disk, what it could not write).
func (p *runningProjections) Stop() {
	_ = p.stopMS()
	p.cancel()
	<-p.done
	p.closeErr = p.Svc.Close()
}
