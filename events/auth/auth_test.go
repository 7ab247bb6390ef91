package auth_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// authEnv is a real embedded server with decentralized auth on, the
// operator's connection and store, and the auth directory.
type authEnv struct {
	t       *testing.T
	auth    *auth.Authority
	srv     *embedded.Server
	admin   *jsstore.Store
	adminJS jetstream.JetStream
	dataDir string
	clock   *events.Clock
}

func startAuth(t *testing.T, authDir, dataDir string) *authEnv {
	t.Helper()
	a, err := auth.Open(authDir)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := embedded.WithAuth(a)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Options{Dir: dataDir, RelaxedSync: true, Configure: cfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(a.OperatorCredsPath()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	st, err := jsstore.Open(ctx, js, jsstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.EnsureHeartbeatBucket(ctx, js, auth.HeartbeatBucketConfig{TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	clock, _ := events.NewClock(events.ClockState{}, nil)
	return &authEnv{t: t, auth: a, srv: srv, admin: st, adminJS: js, dataDir: dataDir, clock: clock}
}

// device is a device's own connection, with the permission errors the
// server reported to it.
type device struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	store *jsstore.Store
	mu    sync.Mutex
	errs  []string
}

func (d *device) violations() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.errs, "\n")
}

func (e *authEnv) credsFor(id string) string {
	e.t.Helper()
	creds, _, err := e.auth.AddDevice(id)
	if err != nil {
		e.t.Fatal(err)
	}
	path := filepath.Join(e.t.TempDir(), id+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *authEnv) connect(credsPath string) (*device, error) {
	d := &device{}
	opts, err := auth.ClientOptions(credsPath)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.MaxReconnects(0), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		d.mu.Lock()
		d.errs = append(d.errs, err.Error())
		d.mu.Unlock()
	}))
	d.nc, err = nats.Connect(e.srv.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	e.t.Cleanup(d.nc.Close)
	d.js, _ = jetstream.New(d.nc)
	d.store, err = jsstore.Attach(context.Background(), d.js)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (e *authEnv) event(device, resource string, p events.Payload) events.Event {
	ev, err := events.New(device, resource, 1, "agent:"+device, p)
	if err != nil {
		e.t.Fatal(err)
	}
	e.clock.Stamp(&ev)
	return ev
}

func (e *authEnv) apply(device string, s events.Store) (events.Applied, error) {
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi " + device + "\\n\"}\n"))
	if err != nil {
		e.t.Fatal(err)
	}
	return events.Apply(context.Background(), s, e.clock, device, m, "user:ops", nil)
}

func quick() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 700*time.Millisecond)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventstest.WaitFor(t, 5*time.Second, what, cond)
}

func TestDeviceCredentialsAreLeastPrivilege(t *testing.T) {
	env := startAuth(t, t.TempDir(), t.TempDir())
	ctx := context.Background()
	if _, err := env.apply("pi-a", env.admin); err != nil { // the operator may apply
		t.Fatal(err)
	}
	if _, err := env.apply("pi-b", env.admin); err != nil {
		t.Fatal(err)
	}
	a, err := env.connect(env.credsFor("pi-a"))
	if err != nil {
		t.Fatal(err)
	}
	_ = env.credsFor("pi-b")

	t.Run("a device writes its own events, plain and in atomic batches", func(t *testing.T) {
		is := is.New(t)
		_, _, err := a.store.Append(ctx, env.event("pi-a", "motd", &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"}))
		is.NoErr(err)
		is.NoErr(a.store.AppendBatch(ctx, []events.Event{
			env.event("pi-a", "motd", &events.ReconcileAttempted{Kind: "file", Attempt: 1, Outcome: events.OutcomeSucceeded}),
			env.event("pi-a", "motd", &events.StatusChanged{Kind: "file", From: "Reconciling", To: "Ready", Trigger: "succeeded"}),
			env.event("pi-a", "motd", &events.DriftDetected{Kind: "file", Policy: events.DriftCorrect}),
			env.event("pi-a", "", &events.DeviceRegistered{AgentVersion: "test", Kinds: events.Kinds}),
		}))
	})
	t.Run("a device reads its own manifest by direct get", func(t *testing.T) {
		is := is.New(t)
		last, err := a.store.LastManifest(ctx, "pi-a")
		is.NoErr(err)
		is.Equal(last.Device, "pi-a")
	})
	t.Run("a device writes its own heartbeat key only", func(t *testing.T) {
		is := is.New(t)
		kv, err := a.js.KeyValue(ctx, events.HeartbeatBucket)
		is.NoErr(err)
		_, err = kv.Put(ctx, "pi-a", []byte("alive"))
		is.NoErr(err)
		qctx, cancel := quick()
		defer cancel()
		_, err = kv.Put(qctx, "pi-b", []byte("alive"))
		is.True(err != nil)
		waitFor(t, "violation on pi-b's heartbeat", func() bool { return strings.Contains(a.violations(), `"$KV.fleet_heartbeats.pi-b"`) })
	})
	t.Run("device A cannot publish as B", func(t *testing.T) {
		is := is.New(t)
		qctx, cancel := quick()
		defer cancel()
		_, _, err := a.store.Append(qctx, env.event("pi-b", "motd", &events.StatusChanged{Kind: "file", From: "Pending", To: "Ready", Trigger: "succeeded"}))
		is.True(err != nil)
		waitFor(t, "violation on pi-b's status", func() bool {
			return strings.Contains(a.violations(), `Permissions Violation for Publish to "fleet.pi-b.status.motd"`)
		})
		n := 0
		for _, err := range env.admin.Read(ctx, events.Filter{Device: "pi-b"}) {
			is.NoErr(err)
			n++
		}
		is.Equal(n, 1) // only the manifest the operator applied
	})
	t.Run("device A cannot read B's manifest", func(t *testing.T) {
		is := is.New(t)
		qctx, cancel := quick()
		defer cancel()
		_, err := a.store.LastManifest(qctx, "pi-b")
		is.True(err != nil)
		waitFor(t, "violation on direct get", func() bool {
			return strings.Contains(a.violations(), `"$JS.API.DIRECT.GET.FLEET.fleet.pi-b.manifest"`)
		})
		for _, cc := range []jetstream.ConsumerConfig{
			{Name: "agent-pi-a", FilterSubject: events.ManifestSubject("pi-b")},
			{Name: "agent-pi-b", FilterSubject: events.ManifestSubject("pi-b")},
			{Name: "agent-pi-a", FilterSubjects: []string{events.ManifestSubject("pi-a"), events.ManifestSubject("pi-b")}},
		} {
			qctx, cancel := quick()
			_, err := a.js.CreateOrUpdateConsumer(qctx, events.Stream, cc)
			cancel()
			is.True(err != nil) // no consumer on B's subjects
		}
		qctx2, cancel2 := quick()
		defer cancel2()
		_, err = a.js.OrderedConsumer(qctx2, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.ManifestSubject("pi-b")}})
		if err == nil { // the ordered consumer is created lazily: reading must fail
			cons, _ := a.js.OrderedConsumer(qctx2, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.ManifestSubject("pi-b")}})
			_, err = cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond))
		}
		is.True(err != nil)
	})
	t.Run("a device cannot apply a manifest, not even its own", func(t *testing.T) {
		is := is.New(t)
		qctx, cancel := quick()
		defer cancel()
		m, _ := events.ParseManifest([]byte("resources: [{id: x, exec: {argv: [rm, -rf, /]}}]"))
		_, err := events.ApplyAfter(qctx, a.store, env.clock, "pi-a", m, "agent:pi-a", nil, 1, 1)
		is.True(err != nil)
		waitFor(t, "violation on the manifest subject", func() bool {
			return strings.Contains(a.violations(), `"fleet.pi-a.manifest"`)
		})
		last, err := env.admin.LastManifest(ctx, "pi-a")
		is.NoErr(err)
		is.Equal(last.Generation, int64(1)) // unchanged
	})
	t.Run("a device cannot manage streams or other consumers", func(t *testing.T) {
		is := is.New(t)
		for _, op := range []func(context.Context) error{
			func(c context.Context) error { return a.js.DeleteStream(c, events.Stream) },
			func(c context.Context) error {
				_, err := a.js.CreateStream(c, jetstream.StreamConfig{Name: "STEAL", Subjects: []string{"steal.>"}})
				return err
			},
			func(c context.Context) error { return a.js.DeleteConsumer(c, events.Stream, "projections") },
		} {
			qctx, cancel := quick()
			is.True(op(qctx) != nil)
			cancel()
		}
		info, err := env.adminJS.Stream(ctx, events.Stream)
		is.NoErr(err)
		is.Equal(info.CachedInfo().State.Msgs, uint64(7)) // 2 manifests by the operator, 5 events by pi-a, nothing else
	})
	t.Run("a device cannot listen to others' replies or events", func(t *testing.T) {
		is := is.New(t)
		for _, subj := range []string{"_INBOX.>", "fleet.>", events.ManifestSubject("pi-b")} {
			sub, err := a.nc.SubscribeSync(subj)
			is.NoErr(err) // refused asynchronously by the server
			waitFor(t, "violation on subscribe "+subj, func() bool {
				return strings.Contains(a.violations(), `Permissions Violation for Subscription to "`+subj+`"`)
			})
			_ = sub.Unsubscribe()
		}
	})
}

func TestRevokedDeviceIsRefused(t *testing.T) {
	is := is.New(t)
	authDir, dataDir := t.TempDir(), t.TempDir()
	env := startAuth(t, authDir, dataDir)
	ctx := context.Background()
	credsA, credsB := env.credsFor("pi-a"), env.credsFor("pi-b")
	a, err := env.connect(credsA)
	is.NoErr(err)
	_, _, err = a.store.Append(ctx, env.event("pi-a", "", &events.DeviceRegistered{AgentVersion: "t", Kinds: events.Kinds}))
	is.NoErr(err)

	closed := make(chan struct{})
	a.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	tok, rec, err := env.auth.RevokeDevice("pi-a")
	is.NoErr(err)
	is.True(rec.Revoked())
	sys, err := nats.Connect(env.srv.ClientURL(), nats.UserCredentials(env.auth.SystemCredsPath()))
	is.NoErr(err)
	defer sys.Close()
	is.NoErr(auth.Push(ctx, sys, tok))

	select { // the live connection is cut
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("revoked device's connection still open after 5s")
	}
	_, err = env.connect(credsA) // and a new one refused
	is.True(err != nil)
	is.True(errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"))
	_, err = env.connect(credsB) // other devices are not affected
	is.NoErr(err)

	// a server started later reads the revocation from the account JWT
	env.srv.Stop()
	env2 := startAuth(t, authDir, dataDir)
	_, err = env2.connect(credsA)
	is.True(err != nil)
	b, err := env2.connect(credsB)
	is.NoErr(err)
	_, err = b.store.LastSeq(ctx)
	is.NoErr(err) // the same stream, in the FLEET account

	// re-adding the device issues new credentials; the old ones stay revoked
	credsA2 := env2.credsFor("pi-a")
	_, err = env2.connect(credsA2)
	is.NoErr(err)
	_, err = env2.connect(credsA)
	is.True(err != nil)
	devs, err := env2.auth.Devices()
	is.NoErr(err)
	is.Equal(len(devs), 2)
	is.Equal(len(devs[0].OldKeys), 1)
}

func TestAddDeviceRefusals(t *testing.T) {
	a, err := auth.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.AddDevice("pi-a"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ id, want string }{
		{"a.b", "one subject token"},
		{"*", "one subject token"},
		{">", "one subject token"},
		{"", "one subject token"},
		{"pi-a", "already has credentials"},
	} {
		t.Run(c.id, func(t *testing.T) {
			is := is.New(t)
			_, _, err := a.AddDevice(c.id)
			is.True(err != nil)
			is.True(errors.Is(err, events.ErrInvalid))
			is.True(strings.Contains(err.Error(), c.want))
		})
	}
	t.Run("revoke unknown", func(t *testing.T) {
		is := is.New(t)
		_, _, err := a.RevokeDevice("pi-zz")
		is.True(errors.Is(err, events.ErrNotFound))
	})
}
