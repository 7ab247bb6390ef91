package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// TestForgedActorsAreReportedNotFolded is issue 16's second finding: with
// its own credentials a device may publish on its own subjects an event that
// claims another agent or a user as its actor, and the operator's
// credentials may write a manifest claiming an agent. The projection
// service, `fleet replay`, `fleet replay --verify` and time travel report
// each with its sequence and fold none of them.
func TestForgedActorsAreReportedNotFolded(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	a, err := auth.Open(t.TempDir())
	is.NoErr(err)
	cfg, err := embedded.WithAuth(a)
	is.NoErr(err)
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir(), RelaxedSync: true, Configure: cfg})
	is.NoErr(err)
	t.Cleanup(srv.Stop)
	opNC, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(a.OperatorCredsPath()))
	is.NoErr(err)
	t.Cleanup(opNC.Close)
	opJS, _ := jetstream.New(opNC)
	ops, err := jsstore.Open(ctx, opJS, jsstore.Config{})
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	mk := func(device, resource string, gen int64, actor string, p events.Payload) events.Event {
		e, err := events.New(device, resource, gen, actor, p)
		is.NoErr(err)
		clock.Stamp(&e)
		return e
	}
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
	is.NoErr(err)
	for _, d := range []string{"pi-a", "pi-b"} {
		_, err := events.Apply(ctx, ops, clock, d, m, "user:ops", nil)
		is.NoErr(err)
	}

	// pi-a with its own, least-privilege credentials
	credsA, _, err := a.AddDevice("pi-a")
	is.NoErr(err)
	credsPath := filepath.Join(t.TempDir(), "pi-a.creds")
	is.NoErr(os.WriteFile(credsPath, credsA, 0o600))
	copts, err := auth.ClientOptions(credsPath)
	is.NoErr(err)
	devNC, err := nats.Connect(srv.ClientURL(), copts...)
	is.NoErr(err)
	t.Cleanup(devNC.Close)
	devJS, _ := jetstream.New(devNC)
	dev, err := jsstore.Attach(ctx, devJS)
	is.NoErr(err)

	appendAs := func(s *jsstore.Store, e events.Event) uint64 {
		seq, _, err := s.Append(ctx, e)
		is.NoErr(err)
		return seq
	}
	appendAs(dev, mk("pi-a", "", 0, "agent:pi-a", &events.DeviceRegistered{AgentVersion: "t", Kinds: events.Kinds}))
	appendAs(dev, mk("pi-a", "motd", 1, "agent:pi-a", &events.StatusChanged{Kind: "file", From: "", To: "Pending", Trigger: "specChanged"}))
	appendAs(dev, mk("pi-a", "motd", 1, "agent:pi-a", &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"}))
	appendAs(dev, mk("pi-a", "motd", 1, "agent:pi-a", &events.StatusChanged{Kind: "file", From: "Reconciling", To: "Ready", Trigger: "succeeded"}))
	type forgery struct {
		seq            uint64
		subject, actor string
	}
	forged := []forgery{
		{appendAs(dev, mk("pi-a", "motd", 1, "agent:pi-b", &events.StatusChanged{Kind: "file", From: "Ready", To: "Failed", Trigger: "failed", Error: "blame pi-b"})), "fleet.pi-a.status.motd", "agent:pi-b"},
		{appendAs(dev, mk("pi-a", "", 0, "user:root", &events.DeviceRegistered{AgentVersion: "root", Kinds: events.Kinds, Labels: map[string]string{"owner": "root"}})), "fleet.pi-a.lifecycle", "user:root"},
		{appendAs(ops, mk("pi-b", "", 2, "agent:pi-b", &events.ManifestApplied{Manifest: m, Digest: m.Digest()})), "fleet.pi-b.manifest", "agent:pi-b"},
	}
	last := appendAs(dev, mk("pi-a", "motd", 1, "agent:pi-a", &events.DriftDetected{Kind: "file", Policy: events.DriftCorrect}))

	t.Run("replay --verify fails naming each with its sequence, subject and claimed actor", func(t *testing.T) {
		is := is.New(t)
		rep, err := replay.Verify(ops.Read(ctx, events.Filter{}), true)
		is.NoErr(err)
		var got []uint64
		for _, v := range rep.Violations {
			is.Equal(v.Kind, replay.ViolationForged) // and nothing else: the forged events blame no one
			got = append(got, v.Seq)
		}
		is.Equal(got, []uint64{forged[0].seq, forged[1].seq, forged[2].seq})

		out, code := replayCLI(t, "replay", "--verify", "--nats", srv.ClientURL(), "--creds", a.OperatorCredsPath())
		is.Equal(code, 1)
		for _, f := range forged {
			want := fmt.Sprintf("seq %d: forged ", f.seq)
			line := ""
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, want) {
					line = l
				}
			}
			is.True(line != "") // one line per forged event
			is.True(strings.Contains(line, " on "+f.subject+" claims actor \""+f.actor+"\""))
		}
		is.True(strings.Contains(out, "3 forged"))
	})

	t.Run("fleet replay does not print them as if true", func(t *testing.T) {
		is := is.New(t)
		out, code := replayCLI(t, "replay", "-o", "ndjson", "--nats", srv.ClientURL(), "--creds", a.OperatorCredsPath())
		is.Equal(code, 0)
		is.Equal(strings.Count(out, "\n"), int(last)-len(forged))
		is.True(!strings.Contains(out, "blame pi-b"))
		is.True(!strings.Contains(out, `"user:root"`))
	})

	t.Run("the projection service counts them and folds none", func(t *testing.T) {
		is := is.New(t)
		svc, err := projections.Open(t.TempDir())
		is.NoErr(err)
		defer svc.Close()
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.Run(sctx, ops) }()
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		defer wcancel()
		is.NoErr(svc.WaitFor(wctx, last))
		cancel()
		is.NoErr(<-done)
		is.Equal(svc.Stats().Forged, uint64(3))
		is.Equal(svc.Stats().Skipped, uint64(3))
		dump, err := svc.Dump()
		is.NoErr(err)
		for _, f := range forged {
			why, ok := dump[fmt.Sprintf("s/%020d", f.seq)]
			is.True(ok) // recorded with its sequence
			is.True(strings.Contains(why, "forged"))
		}
		pa, ok := svc.Device("pi-a")
		is.True(ok)
		is.Equal(pa.Resources[0].State, "Ready") // not the forged Failed
		is.Equal(len(pa.Labels), 0)              // not the forged registration's labels
		pb, ok := svc.Device("pi-b")
		is.True(ok)
		is.Equal(pb.Generation, int64(1)) // not the forged manifest
	})

	t.Run("time travel folds none of them", func(t *testing.T) {
		is := is.New(t)
		for _, c := range []struct {
			device string
			check  func(projections.Device)
		}{
			{"pi-a", func(d projections.Device) { is.Equal(d.Resources[0].State, "Ready"); is.Equal(len(d.Labels), 0) }},
			{"pi-b", func(d projections.Device) { is.Equal(d.Generation, int64(1)) }},
		} {
			d, ok, _, err := timetravel.FoldAt(ops.Read(ctx, events.Filter{Device: c.device}), timetravel.Query{Device: c.device, At: time.Now().Add(time.Hour)})
			is.NoErr(err)
			is.True(ok)
			c.check(d)
		}
	})
}
