package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleet-dev/fleet/replay/timetravel"
)

func init() {
	addServerPart("time travel", startTimeTravel)
}

// startTimeTravel runs the time-travel index inside `fleet server`: it
// follows the log into a Pebble store under the data directory, answers
// `fleet inspect` on its micro service, and serves
// GET /api/devices/{id}/at?t=RFC3339 (or ?seq=N) for the dashboard.
func startTimeTravel(ctx context.Context, env *ServerEnv) (func(), error) {
	x, err := timetravel.Open(filepath.Join(env.DataDir, "timetravel"))
	if err != nil {
		return nil, err
	}
	if r := x.Recovered(); r != "" {
		fmt.Fprintln(os.Stderr, "fleet server:", r)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	guard := &indexGuard{x: x, dataDir: env.DataDir}
	guard.check(ctx, env.JS) // before /healthz can be asked
	if env.Health != nil {
		env.Health.add(guard.health)
	}
	go func() {
		defer close(done)
		logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("part", "time travel")
		err := guard.follow(ctx, env.JS, func(ctx context.Context) error { return x.Follow(ctx, env.Store, logger) })
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleet server: time travel:", err)
		}
	}()
	svc, err := x.Serve(env.Conn, env.Store)
	if err != nil {
		cancel()
		<-done
		x.Close()
		return nil, err
	}
	if env.Mux != nil {
		env.Mux.HandleFunc("GET /api/devices/{id}/at", x.HTTPHandler())
	}
	return func() {
		_ = svc.Stop()
		cancel()
		<-done
		env.stopErrs.add(x.Close())
	}, nil
}
