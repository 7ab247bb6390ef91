package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

func init() {
	register("project", "Run the projection service on its own, or rebuild read models from the log.", "Read side", &ProjectCmd{})
}

// ProjectCmd is `fleet project`.
type ProjectCmd struct {
	Data         string        `default:"./fleet-projections" placeholder:"DIR" help:"Where the read models and their checkpoint live."`
	Durable      string        `default:"fleet-project" help:"Durable consumer name (one per service instance; 'fleet server' uses fleet-projections)."`
	HTTP         string        `name:"http" placeholder:"ADDR" help:"Serve the HTTP API here too (e.g. 127.0.0.1:8081)."`
	HeartbeatTTL time.Duration `default:"3m" help:"How long a device's heartbeat counts before it is Stale (agents write one a minute by default)."`
	Rebuild      bool          `help:"Build the read models from sequence 1 into a fresh store while the old one keeps answering, then swap."`
	Remote       bool          `help:"With --rebuild: ask the running service (fleet server or fleet project) to rebuild instead, and show its progress."`
	Status       bool          `help:"Show the running service's checkpoint, lag and counters, and exit."`
	Front        bool          `help:"Fold nothing: serve the HTTP API (--http) and the dashboard for the workers of a partitioned read side, merged."`
	Partition    string        `placeholder:"I/N" help:"Run worker I of N of a partitioned read side (0/2 and 1/2: two workers): it folds and serves only its devices (FNV-1a of the id mod N, as nats-server's partition() mapping); fleet get merges all N. With --status or --rebuild --remote: that worker."`
	Output
}

// Help is shown by `fleet project --help`.
func (c *ProjectCmd) Help() string {
	return `The projection service consumes the FLEET stream with a durable consumer,
folds every event into the read models (fleet state, drift history) and writes
them with its checkpoint in one synced Pebble batch: a restart, also after
kill -9, resumes exactly where it stopped. 'fleet server' runs one inside it;
'fleet project' runs one on its own, serving the same NATS micro service
(what 'fleet get', 'fleet drift' and 'fleet explain' ask) and, with --http,
the HTTP API.

Examples:
  fleet project --nats nats://127.0.0.1:4222 --data /var/lib/fleet/projections
  fleet project --rebuild                       # rebuild locally, then keep serving
  fleet project --rebuild --remote              # rebuild inside the running 'fleet server'
  fleet project --status -o json                # checkpoint, lag, events applied
  fleet project --partition 0/2 --data /var/lib/fleet/p0   # two workers, each
  fleet project --partition 1/2 --data /var/lib/fleet/p1   # half of the devices
  fleet get devices                             # merges both; names a worker that is down
  fleet project --status --partition 1/2        # one worker's checkpoint and lag
  fleet project --front --http 127.0.0.1:8080   # the merged API and the dashboard

A partitioned worker reads the whole stream in order (its checkpoint is the
stream's sequence) but decodes, folds and stores only its own devices' events.
'fleet get device ID' asks the device's owner; 'fleet get devices' merges every
worker's page and, if one is down, lists the others' devices and says which
partition is missing. Changing N: see the README (start the new workers beside
the old ones with their own --data, wait until their lag is 0, stop the old).`
}

// Run runs the service, rebuilds, or shows its status.
func (c *ProjectCmd) Run(ctx context.Context, g *Globals) error {
	if c.Remote && !c.Rebuild {
		return usagef("--remote: only with --rebuild")
	}
	if c.Front {
		return c.front(ctx, g)
	}
	var part *events.Partition
	if c.Partition != "" {
		p, err := events.ParsePartition(c.Partition)
		if err != nil {
			return usagef("--partition: %v", err)
		}
		part = &p
		if c.Durable == "fleet-project" { // the default: one consumer per worker
			c.Durable = fmt.Sprintf("fleet-project-p%dof%d", p.I, p.N)
		}
	}
	if c.Status || c.Remote {
		return c.remote(ctx, g, part)
	}
	nc, st, err := g.Store(ctx, "fleet-project")
	if err != nil {
		return err
	}
	defer nc.Close()
	js := st.JetStream()
	var mux *http.ServeMux
	if c.HTTP != "" {
		mux = http.NewServeMux()
	}
	var opts []projections.Option
	if part != nil {
		opts = append(opts, projections.WithPartition(*part))
	}
	p, err := startProjections(ctx, nc, js, c.Data, c.Durable, c.HeartbeatTTL, mux, opts...)
	if err != nil {
		return err
	}
	defer p.Stop()
	if mux != nil {
		ln, err := net.Listen("tcp", c.HTTP)
		if err != nil {
			return fmt.Errorf("http on %s: %w", c.HTTP, err)
		}
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	fmt.Fprintf(os.Stderr, "fleet project: read models in %s, checkpoint %d, consumer %s\n", c.Data, p.Svc.Checkpoint(), c.Durable)
	if part != nil {
		fmt.Fprintf(os.Stderr, "fleet project: partition %s: this worker folds and serves its devices only\n", part)
	}
	if c.Rebuild {
		start := time.Now()
		err := p.Svc.Rebuild(ctx, js, func(done, total uint64) { c.progress(done, total, start) })
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		st := p.Svc.Stats()
		if c.JSON() {
			_ = printJSON(map[string]any{"rebuilt": true, "checkpoint": st.Checkpoint, "seconds": time.Since(start).Seconds()})
		} else {
			fmt.Printf("rebuilt up to sequence %d in %s; swapped in, serving\n", st.Checkpoint, time.Since(start).Round(time.Millisecond))
		}
	}
	<-ctx.Done()
	return nil
}

func (c *ProjectCmd) progress(done, total uint64, start time.Time) {
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	rate := float64(done) / max(time.Since(start).Seconds(), 0.001)
	if c.JSON() {
		_ = printJSON(map[string]any{"done": done, "total": total, "eventsPerSecond": int(rate)})
		return
	}
	fmt.Printf("rebuild: %d of %d (%.0f%%), %.0f events/s\n", done, total, pct, rate)
}

func (c *ProjectCmd) remote(ctx context.Context, g *Globals, part *events.Partition) error {
	nc, err := g.Connect("fleet-project")
	if err != nil {
		return err
	}
	defer nc.Close()
	cl := api.NewClient(nc)
	if part != nil {
		cl = cl.ForPartition(*part)
	}
	if c.Status {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		if c.JSON() {
			return printJSON(st)
		}
		return table(os.Stdout, []string{"CHECKPOINT", "STREAM LAST", "LAG", "APPLIED", "SKIPPED", "DEVICES", "REBUILDING"},
			[][]string{{fmt.Sprint(st.Checkpoint), fmt.Sprint(st.StreamLast), fmt.Sprint(st.Lag), fmt.Sprint(st.Applied),
				fmt.Sprint(st.Skipped), fmt.Sprint(st.Devices), fmt.Sprint(st.Rebuilding)}})
	}
	start := time.Now()
	st, err := cl.Rebuild(ctx)
	if err != nil {
		return err
	}
	for st.Rebuilding {
		c.progress(st.RebuildDone, st.RebuildTotal, start)
		select {
		case <-ctx.Done():
			return errors.New("stopped watching; the rebuild goes on in the service")
		case <-time.After(time.Second):
		}
		if st, err = cl.Status(ctx); err != nil {
			return err
		}
	}
	if c.JSON() {
		return printJSON(map[string]any{"rebuilt": true, "checkpoint": st.Checkpoint, "seconds": time.Since(start).Seconds()})
	}
	fmt.Printf("rebuilt up to sequence %d in %s; swapped in\n", st.Checkpoint, time.Since(start).Round(time.Millisecond))
	return nil
}
