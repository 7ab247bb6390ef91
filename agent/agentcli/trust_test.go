package agentcli_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/agentcli"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventstest.WaitFor(t, 15*time.Second, what, cond)
}

// TestTrustedAgentAppliesOnlySignedManifests runs the agent command's
// options with --trust, on a server with auth on and the device's own
// least-privilege credentials: an unsigned manifest and one signed by
// another key are recorded as ManifestRejected (with the key id) and the
// agent keeps converging on its last good manifest, correcting drift to it;
// a later manifest signed by the trusted key is applied.
func TestTrustedAgentAppliesOnlySignedManifests(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()

	// the control side: auth on, the operator's store, the heartbeat bucket
	authority, err := auth.Open(t.TempDir())
	is.NoErr(err)
	cfg, err := embedded.WithAuth(authority)
	is.NoErr(err)
	srv, err := embedded.Start(embedded.Options{Dir: t.TempDir(), RelaxedSync: true, Configure: cfg})
	is.NoErr(err)
	t.Cleanup(srv.Stop)
	opNC, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(authority.OperatorCredsPath()))
	is.NoErr(err)
	t.Cleanup(opNC.Close)
	opJS, _ := jetstream.New(opNC)
	ops, err := jsstore.Open(ctx, opJS, jsstore.Config{})
	is.NoErr(err)
	_, err = auth.EnsureHeartbeatBucket(ctx, opJS, auth.HeartbeatBucketConfig{TTL: time.Minute})
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	trusted, err := events.GenerateSigner()
	is.NoErr(err)
	other, err := events.GenerateSigner()
	is.NoErr(err)
	apply := func(content string, s events.Signer) int64 {
		t.Helper()
		m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"" + content + "\"}\n"))
		is.NoErr(err)
		res, err := events.Apply(ctx, ops, clock, "pi-01", m, "user:ops", s)
		is.NoErr(err)
		return res.Generation
	}

	// the device: its own credentials, and --trust with the key as a file
	creds, _, err := authority.AddDevice("pi-01")
	is.NoErr(err)
	credsPath := filepath.Join(t.TempDir(), "pi-01.creds")
	is.NoErr(os.WriteFile(credsPath, creds, 0o600))
	pubPath := filepath.Join(t.TempDir(), "ops.pub")
	is.NoErr(os.WriteFile(pubPath, []byte(trusted.Public().String()+"\n"), 0o644))
	root := t.TempDir()
	cmd := agentcli.Cmd{Device: "pi-01", Root: root, State: t.TempDir(), DriftInterval: 100 * time.Millisecond,
		Concurrency: 4, Trust: []string{pubPath}}
	opts, err := cmd.Options()
	is.NoErr(err)
	copts, err := auth.ClientOptions(credsPath)
	is.NoErr(err)
	var mu sync.Mutex
	var violations []string
	copts = append(copts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		violations = append(violations, err.Error())
		mu.Unlock()
	}))
	nc, err := nats.Connect(srv.ClientURL(), append(agentcli.ConnectOptions(), copts...)...)
	is.NoErr(err)
	t.Cleanup(nc.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h, err := agent.Start(ctx, nc, "pi-01", append(opts, agent.WithLog(jsstore.NewLazy(nc)), agent.WithLogger(quiet), agent.WithManifestPoll(100*time.Millisecond))...)
	is.NoErr(err)
	t.Cleanup(func() { _ = h.Stop() })

	motd := filepath.Join(root, "etc/motd")
	content := func() string { b, _ := os.ReadFile(motd); return string(b) }
	rejected := func() []*events.ManifestRejected {
		var out []*events.ManifestRejected
		for st, err := range ops.Read(ctx, events.Filter{Device: "pi-01", Types: []string{events.TypeManifestRejected}}) {
			if err != nil {
				continue
			}
			p, _ := st.Payload()
			out = append(out, p.(*events.ManifestRejected))
		}
		return out
	}

	gen1 := apply("v1", trusted)
	waitFor(t, "signed generation 1 applied", func() bool { return content() == "v1" && h.Agent.Generation() == gen1 })

	gen2 := apply("unsigned", nil)
	waitFor(t, "unsigned manifest rejected", func() bool { return len(rejected()) == 1 })
	r := rejected()[0]
	is.Equal(r.Generation, gen2)
	is.Equal(r.KeptGeneration, gen1)
	is.True(strings.Contains(r.Reason, "unsigned"))

	gen3 := apply("forged", other)
	waitFor(t, "manifest signed by another key rejected", func() bool { return len(rejected()) == 2 })
	r = rejected()[1]
	is.Equal(r.Generation, gen3)
	is.Equal(r.KeptGeneration, gen1)
	is.Equal(r.KeyID, other.KeyID()) // the audit trail names the key that signed it
	is.True(strings.Contains(r.Reason, "signed by key "+other.KeyID()))
	is.Equal(h.Agent.Generation(), gen1)
	is.Equal(content(), "v1")

	// still converging on generation 1: drift is corrected back to it
	is.NoErr(os.WriteFile(motd, []byte("tampered"), 0o644))
	waitFor(t, "drift corrected to the last good manifest", func() bool { return content() == "v1" })
	waitFor(t, "DriftDetected on the log", func() bool {
		for st, err := range ops.Read(ctx, events.Filter{Device: "pi-01", Types: []string{events.TypeDriftDetected}}) {
			if err == nil && st.Generation == gen1 {
				return true
			}
		}
		return false
	})

	gen4 := apply("v4", trusted)
	waitFor(t, "signed generation 4 applied", func() bool { return content() == "v4" && h.Agent.Generation() == gen4 })
	is.Equal(len(rejected()), 2)

	// the agent did all of this within its least privilege
	kv, err := opJS.KeyValue(ctx, events.HeartbeatBucket)
	is.NoErr(err)
	_, err = kv.Get(ctx, "pi-01")
	is.NoErr(err) // its heartbeat is there
	mu.Lock()
	defer mu.Unlock()
	is.Equal(len(violations), 0) // and the server reported no permission violation
}

func TestTrustFlagRefusesBadKeys(t *testing.T) {
	for _, c := range []struct{ trust, want string }{
		{"ed25519:short", "not base64"},
		{"ed25519:" + strings.Repeat("A", 40), "must be 32 bytes"},
		{"/no/such/key.pub", "neither"},
		{"AAAA", "neither"},
	} {
		t.Run(c.trust, func(t *testing.T) {
			is := is.New(t)
			cmd := agentcli.Cmd{Device: "pi-01", Root: t.TempDir(), State: t.TempDir(), DriftInterval: time.Second, Concurrency: 1, Trust: []string{c.trust}}
			_, err := cmd.Options()
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), "--trust"))
			is.True(strings.Contains(err.Error(), c.want))
		})
	}
}
