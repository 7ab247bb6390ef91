package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

func init() {
	addServerPart("time travel", startTimeTravel)
}

// startTimeTravel runs the time-travel index inside `fleet server`: it
// follows the log into a Pebble store under the data directory, answers
// `fleet inspect` on its micro service, and serves
// GET /api/devices/{id}/at?t=RFC3339 (or ?seq=N) for the dashboard. The
// index is the read side's runtime with its own model, so it holds itself
// back from a log that went backwards and says so in its health, as the
// projection service does.
func startTimeTravel(ctx context.Context, env *ServerEnv) (func(), error) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("part", "time travel")
	x, err := timetravel.Open(filepath.Join(env.DataDir, "timetravel"), timetravel.WithLogger(logger))
	if err != nil {
		return nil, err
	}
	if r := x.Recovered(); r != "" {
		fmt.Fprintln(os.Stderr, "fleet server:", r)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	if env.Health != nil {
		env.Health.add(func() api.Check { return timeTravelCheck(x) })
	}
	go func() {
		defer close(done)
		if err := x.Follow(ctx, env.Store); err != nil {
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

// timeTravelCheck is the index's /healthz check: its runtime's verdict on
// the log (projections.Service.Health).
func timeTravelCheck(x *timetravel.Index) api.Check {
	h := x.Health()
	c := api.Check{Name: "time travel", OK: h.OK,
		Detail: map[string]uint64{"checkpoint": h.Checkpoint, "streamFirst": h.StreamFirst, "streamLast": h.StreamLast}}
	if !c.OK {
		c.Reason, c.Action = h.Reason, h.Action
	}
	return c
}
