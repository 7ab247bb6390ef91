package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/projections/rollouts"
)

func init() {
	addServerPart("rollout controller", startRolloutController)
	addServerPart("rollout api", startRolloutAPI)
}

// startRolloutAPI serves the rollout read side over HTTP
// (api.RolloutRoutes: list, one, time travel, the rollouts holding a
// device), read from the log and judged with the projection service's
// device read models (in time travel, with the time-travel index's). With
// HTTP off it does nothing.
func startRolloutAPI(_ context.Context, env *ServerEnv) (func(), error) {
	if env.Mux == nil {
		return nil, nil
	}
	api.RolloutRoutes(env.Mux, &rollouts.Reader{Log: env.Store, Devices: rollouts.DevicesOf{Client: api.NewClient(env.Conn)},
		Past: rollouts.PastOf{Conn: env.Conn, Log: env.Store}}) // ?t=: the devices as they were (the time-travel index)
	return nil, nil
}

// controllerKey is the controller's signing option for a key file ("": none).
func controllerKey(path string) ([]rollouts.Option, error) {
	if path == "" {
		return nil, nil
	}
	s, err := events.LoadSigner(path)
	if err != nil {
		return nil, err
	}
	return []rollouts.Option{rollouts.WithSigner(s)}, nil
}

// startRolloutController runs a rollout controller inside `fleet server`
// (unless --no-rollout-controller). It reads the device read models from
// the projection service over NATS, as `fleet rollout controller` does;
// any number of controllers may run against one log (each decision is
// compare-and-set), so a second server on the same cluster is safe. With
// FLEET_ROLLOUT_KEY (a key file from 'fleet key new') it signs every
// manifest it writes with that key (rollouts.WithSigner).
func startRolloutController(ctx context.Context, env *ServerEnv) (func(), error) {
	if env.NoRollouts {
		return nil, nil
	}
	opts, err := controllerKey(os.Getenv("FLEET_ROLLOUT_KEY"))
	if err != nil {
		return nil, fmt.Errorf("FLEET_ROLLOUT_KEY: %w", err)
	}
	ctl, err := rollouts.NewController(env.Store, rollouts.DevicesOf{Client: api.NewClient(env.Conn)}, "user:rollout-controller", opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctl.Run(ctx, time.Second, func(err error) { log.Warn("rollout controller", "err", err) })
	}()
	return func() { cancel(); wg.Wait() }, nil
}
