package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/fleet-dev/fleet/projections/api"
)

// front serves the HTTP API and the dashboard in front of the workers of a
// partitioned read side (fleet project --front --http ADDR): it folds
// nothing itself and answers from the workers over NATS, merged
// (api.MergedRoutes).
func (c *ProjectCmd) front(ctx context.Context, g *Globals) error {
	if c.HTTP == "" {
		return usagef("--front: give --http ADDR, where the merged API and the dashboard are served")
	}
	if c.Partition != "" || c.Rebuild || c.Status {
		return usagef("--front: not with --partition, --rebuild or --status (it folds nothing; ask a worker with --status --partition I/N)")
	}
	nc, err := g.Connect("fleet-project-front")
	if err != nil {
		return err
	}
	defer nc.Close()
	n := 0
	for waited := false; n < 2; waited = true { // workers may start after the front
		if n, err = api.DiscoverPartitions(ctx, nc, time.Second); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if n >= 2 {
			break
		}
		if !waited {
			fmt.Fprintf(os.Stderr, "fleet project --front: no partitioned projection workers answer on %s yet (start them with 'fleet project --partition I/N'); waiting\n", g.URL())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	mux := http.NewServeMux()
	api.MergedRoutes(mux, api.Partitioned(nc, n))
	dashboardRoutes(mux)
	ln, err := net.Listen("tcp", c.HTTP)
	if err != nil {
		return fmt.Errorf("http on %s: %w", c.HTTP, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	if c.JSON() {
		_ = printJSON(map[string]any{"http": ln.Addr().String(), "partitions": n})
	} else {
		fmt.Fprintf(os.Stderr, "fleet project --front: the API and dashboard of %d partitions on http://%s (live updates, a device's events and /metrics: each worker's own --http)\n", n, ln.Addr())
	}
	<-ctx.Done()
	return nil
}
