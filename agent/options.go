package agent

import (
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// Defaults of the options.
const (
	DefaultDriftInterval = time.Minute
	DefaultConcurrency   = 16
	DefaultBackoffBase   = time.Second
	DefaultBackoffMax    = 5 * time.Minute
	// DefaultHeartbeatInterval: each heartbeat is a KV write (about 300
	// bytes on the wire and, on a file-backed bucket with fsync before ack,
	// a durable write); at 10 s that was 2.6 MB a device a day and 1,000
	// writes a second for 10,000 devices (fleet sim, BENCHMARKS.md). The
	// server's default heartbeat TTL (3 min) is three intervals.
	DefaultHeartbeatInterval = time.Minute
	DefaultAttemptTimeout    = 2 * time.Minute
	DefaultShutdownGrace     = 10 * time.Second
	// DefaultManifestPoll is the safety-net read of the manifest subject. New
	// manifests are seen at once from a subscription hint and re-read on
	// every reconnect; each poll costs a direct get of the whole manifest
	// (about 1.2 kB on the wire for 5 files), so at 5 s it was 21 MB a
	// device a day (fleet sim, BENCHMARKS.md).
	DefaultManifestPoll = 10 * time.Minute
)

// Option configures an Agent (see New).
type Option func(*options)

type options struct {
	root, stateDir    string
	driftInterval     time.Duration
	concurrency       int
	allowExec         bool
	labels            map[string]string
	reconcilers       []reconcile.Reconciler
	backoffBase       time.Duration
	backoffMax        time.Duration
	heartbeatInterval time.Duration
	attemptTimeout    time.Duration
	shutdownGrace     time.Duration
	manifestPoll      time.Duration
	manifestCheck     func(events.Stored, *events.ManifestApplied) error
	now               func() time.Time
	maxClockSkew      time.Duration
	logger            *slog.Logger
	log               Log // WithLog
	onEvent           func([]events.Event)
	onPublished       func(n int)
	storeFS           vfs.FS // nil: the operating system's (see WithStoreFS)
}

func defaultOptions() options {
	return options{
		root:              "/",
		stateDir:          "/var/lib/fleet-agent",
		driftInterval:     DefaultDriftInterval,
		concurrency:       DefaultConcurrency,
		backoffBase:       DefaultBackoffBase,
		backoffMax:        DefaultBackoffMax,
		heartbeatInterval: DefaultHeartbeatInterval,
		attemptTimeout:    DefaultAttemptTimeout,
		shutdownGrace:     DefaultShutdownGrace,
		manifestPoll:      DefaultManifestPoll,
		maxClockSkew:      DefaultMaxClockSkew,
	}
}

// WithRoot sets the directory file resources are placed under ("/" by default).
func WithRoot(dir string) Option { return func(o *options) { o.root = dir } }

// WithStateDir sets where the agent keeps its Pebble store (snapshot and
// outbox) and where reconcilers keep their records.
func WithStateDir(dir string) Option { return func(o *options) { o.stateDir = dir } }

// WithDriftInterval sets how often Ready resources are observed again.
func WithDriftInterval(d time.Duration) Option { return func(o *options) { o.driftInterval = d } }

// WithConcurrency bounds how many reconciler calls run at once. Applies of a
// kind whose reconciler is a reconcile.BatchApplier (files) that are due
// together share one call, which runs its own bounded parallel I/O.
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithAllowExec enables the exec kind (off by default).
func WithAllowExec(allow bool) Option { return func(o *options) { o.allowExec = allow } }

// WithLabels sets the device's labels, recorded in DeviceRegistered.
func WithLabels(l map[string]string) Option {
	return func(o *options) {
		o.labels = make(map[string]string, len(l))
		for k, v := range l {
			o.labels[k] = v
		}
	}
}

// WithReconcilers replaces the default reconcilers (reconcile.Defaults).
func WithReconcilers(rs ...reconcile.Reconciler) Option {
	return func(o *options) { o.reconcilers = rs }
}

// WithBackoff sets the first retry delay after a failure and its cap; each
// further failure doubles the delay, with jitter.
func WithBackoff(base, max time.Duration) Option {
	return func(o *options) { o.backoffBase, o.backoffMax = base, max }
}

// WithHeartbeatInterval sets how often the agent writes its heartbeat.
func WithHeartbeatInterval(d time.Duration) Option {
	return func(o *options) { o.heartbeatInterval = d }
}

// WithAttemptTimeout bounds one reconciler call (an exec resource gets at
// least its own timeout).
func WithAttemptTimeout(d time.Duration) Option { return func(o *options) { o.attemptTimeout = d } }

// WithShutdownGrace bounds how long Run waits for running attempts when its
// context ends.
func WithShutdownGrace(d time.Duration) Option { return func(o *options) { o.shutdownGrace = d } }

// WithManifestPoll sets how often the agent reads its manifest subject when no
// notification came (a safety net; new manifests are normally seen at once).
func WithManifestPoll(d time.Duration) Option { return func(o *options) { o.manifestPoll = d } }

// WithManifestCheck sets a hook that sees every new manifest before the agent
// takes it (signature checks). A non-nil error rejects the manifest: the agent
// records ManifestRejected with the error as reason and keeps its last good
// manifest.
func WithManifestCheck(check func(events.Stored, *events.ManifestApplied) error) Option {
	return func(o *options) { o.manifestCheck = check }
}

// WithClock sets the wall clock the agent stamps events from (tests: a clock
// that jumps backwards or runs ahead). Stamps never go backwards whatever it
// returns, unless the agent measured them ahead of the server's time (see
// WithMaxClockSkew and events.ClockSkewDetected).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithLogger sets where the agent logs (slog.Default by default).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithOnEvent sets a hook called with the events of every local commit, in
// order, once they are committed to the outbox (before they reach the log).
// It runs on the agent's loop: it must not block.
func WithOnEvent(f func([]events.Event)) Option { return func(o *options) { o.onEvent = f } }

// WithOnPublished sets a hook called with the number of events of every
// outbox batch the log acknowledged, in drain order (the simulator uses it to
// replay the same batch shapes against a bare client). It runs on the
// drainer: it must not block.
func WithOnPublished(f func(n int)) Option { return func(o *options) { o.onPublished = f } }

// WithLog sets the log the agent publishes to and reads its manifest from
// (required by Run and Flush): jsstore.NewLazy over the same connection as
// Run's, which attaches when the server appears. Tests may wrap it.
func WithLog(l Log) Option { return func(o *options) { o.log = l } }
