// Package agent is the device daemon: it reads its desired state from the
// log, keeps one lifecycle per resource (package fsm), converges resources
// through the reconcilers of agent/reconcile with bounded concurrency,
// timeouts and backoff, re-observes them to catch drift, and records every
// transition and attempt as an event. It works offline: its manifest, its
// resources' states and the events the log has not acknowledged live in a
// local Pebble store, written in one synced batch per change (a
// transactional outbox) and drained to the log in order when it is reachable.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
	"github.com/fleet-dev/fleet/internal/hint"
)

// Version is the agent's version, recorded in DeviceRegistered (set by the
// linker: -X github.com/fleet-dev/fleet/agent.Version=...).
var Version = "dev"

// Agent converges one device. Create it with New, run it with Run; Close it
// when done. Methods other than Run are safe for concurrent use.
type Agent struct {
	device string
	o      options
	log    *slog.Logger
	db     *pebble.DB
	clock  *events.Clock
	recs   map[string]reconcile.Reconciler

	snap *snapshot // loaded by New, owned by the loop once Run starts

	commitMu   sync.Mutex // one txn at a time
	outboxNext uint64     // guarded by commitMu
	outboxLen  atomic.Int64
	parked     atomic.Int64 // outbox events the log refused, kept under prefixParked
	published  atomic.Int64 // outbox events the log took, since the start
	drainWake  chan struct{}
	working    atomic.Int32 // reconciler calls running, as of the loop's last commit (gather)
	// refusedSaid is set once the credentials-refused warning is logged for
	// the current outage (by the outbox drain or the connection watcher)
	refusedSaid atomic.Bool
	drainMu     sync.Mutex // one drain at a time
	commits     atomic.Uint64

	markMu  sync.Mutex // guards the three below (storedamage.go)
	mark    storeMark  // last written
	markErr bool
	acked   uint64 // last outbox sequence the log acknowledged (or parked); guarded by markMu

	syncMu        sync.Mutex // guards the two below
	syncedCommits uint64
	durableSeq    uint64            // last outbox sequence known to be fsynced
	durableClock  events.ClockState // the clock as of durableSeq's commits

	running atomic.Bool
	viewMu  sync.Mutex
	view    map[string]ResourceStatus
	gen     atomic.Int64
}

// ResourceStatus is a resource's lifecycle as the agent last committed it.
type ResourceStatus struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	State      fsm.State `json:"state"`
	Generation int64     `json:"generation"`
	Attempts   int       `json:"attempts"`
	Reason     string    `json:"reason,omitempty"`
	Error      string    `json:"error,omitempty"`
	RetryAfter time.Time `json:"retryAfter,omitzero"`
}

// New opens (or creates) the agent's store in its state directory and loads
// its snapshot. The device id must be a valid id (events.CheckID). Only one
// Agent may use a state directory at a time (the store is locked).
func New(device string, opts ...Option) (*Agent, error) {
	if err := events.CheckID("device", device); err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency %d: must be at least 1", events.ErrInvalid, o.concurrency)
	case o.driftInterval <= 0:
		return nil, fmt.Errorf("%w: drift interval %s: must be positive", events.ErrInvalid, o.driftInterval)
	case o.backoffBase <= 0 || o.backoffMax < o.backoffBase:
		return nil, fmt.Errorf("%w: backoff %s..%s: base must be positive and at most the cap", events.ErrInvalid, o.backoffBase, o.backoffMax)
	case o.heartbeatInterval <= 0 || o.attemptTimeout <= 0 || o.manifestPoll <= 0:
		return nil, fmt.Errorf("%w: heartbeat interval, attempt timeout and manifest poll must be positive", events.ErrInvalid)
	case o.maxClockSkew <= 0:
		return nil, fmt.Errorf("%w: max clock skew %s: must be positive", events.ErrInvalid, o.maxClockSkew)
	case o.stateDir == "":
		return nil, fmt.Errorf("%w: state directory: must be set", events.ErrInvalid)
	}
	for k, v := range o.labels {
		if err := checkLabel(k, v); err != nil {
			return nil, err
		}
	}
	log := o.logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("device", device)
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return nil, hint.PermissionDir(fmt.Errorf("state directory %s: %w", o.stateDir, err), o.stateDir, "--state", stateDirFix)
	}
	// The store first: its lock keeps a second agent (say, a --deregister
	// run beside the daemon) from touching anything else of this state.
	db, replaced, err := openStore(o.stateDir+"/store", o.storeFS, log)
	if err != nil {
		return nil, hint.PermissionDir(hint.InUse(err, o.stateDir, "--state"), o.stateDir, "--state", stateDirFix)
	}
	snap, err := loadSnapshot(db)
	if err != nil && pebble.IsCorruptionError(err) && !replaced {
		db.Close() // a damaged table: replaced as a store Pebble cannot open
		if db, err = replaceStore(o.stateDir+"/store", o.storeFS, err, log); err != nil {
			return nil, err
		}
		replaced = true
		snap, err = loadSnapshot(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("load agent store: %w", err)
	}
	damaged := checkStore(snap, o.stateDir, replaced, log)
	if snap.clock.Writer == "" {
		// A new store (first start, or wiped): a new writer incarnation, so
		// its sequence starting from 1 cannot collide with what an earlier
		// store of this device wrote. Persisted with the first commit.
		snap.clock.Writer = events.NewWriter()
	}
	clock, err := events.NewClock(snap.clock, o.now)
	if err != nil {
		db.Close()
		return nil, err
	}
	if o.reconcilers == nil {
		o.reconcilers = reconcile.Defaults(reconcile.Options{Root: o.root, StateDir: o.stateDir, AllowExec: o.allowExec})
		for _, r := range o.reconcilers {
			if sk, ok := r.(reconcile.SpareKeeper); ok {
				if err := sk.KeepSparesIn(o.stateDir); err != nil {
					log.Warn("writes go through temp files only", "kind", r.Kind(), "err", err)
				}
			}
		}
	}
	recs := map[string]reconcile.Reconciler{}
	for _, r := range o.reconcilers {
		recs[r.Kind()] = r
	}
	a := &Agent{
		device: device, o: o, log: log, db: db, clock: clock, recs: recs, snap: snap,
		outboxNext: snap.outboxNext, drainWake: make(chan struct{}, 1), view: map[string]ResourceStatus{},
	}
	a.outboxLen.Store(int64(snap.outboxLen))
	a.parked.Store(int64(snap.parked))
	a.durableSeq = snap.outboxNext - 1 // what a restart found is on disk
	a.durableClock = clock.State()
	a.acked = a.durableSeq - uint64(snap.outboxLen) - uint64(snap.parked)
	if damaged {
		a.acked = a.durableSeq // the lost ones are not waited for
		a.writeMark()          // the damage is reported once
	}
	for id, r := range snap.resources {
		a.view[id] = statusOf(r)
	}
	if snap.manifest != nil {
		a.gen.Store(snap.manifest.Generation)
	}
	return a, nil
}

// checkLabel checks a label key and value.
func checkLabel(k, v string) error {
	if !events.ValidID(k) {
		return fmt.Errorf("%w: label key %q: must be %s", events.ErrInvalid, k, events.IDRule)
	}
	if len(v) > 256 {
		return fmt.Errorf("%w: label %s value: must be at most 256 bytes", events.ErrInvalid, k)
	}
	return nil
}

func statusOf(r *resourceRecord) ResourceStatus {
	return ResourceStatus{ID: r.ID, Kind: r.Kind, State: r.State, Generation: r.Generation, Attempts: r.Attempts,
		Reason: r.Reason, Error: r.Error, RetryAfter: r.RetryAfter}
}

// Device returns the device id.
func (a *Agent) Device() string { return a.device }

// Generation returns the manifest generation in force (0: none yet).
func (a *Agent) Generation() int64 { return a.gen.Load() }

// Status returns every managed resource's committed status, by id.
func (a *Agent) Status() map[string]ResourceStatus {
	a.viewMu.Lock()
	defer a.viewMu.Unlock()
	return maps.Clone(a.view)
}

// Kinds returns the kinds this agent reconciles, sorted.
func (a *Agent) Kinds() []string {
	return slices.Sorted(maps.Keys(a.recs))
}

// Close syncs and closes the agent's store and closes the reconcilers that
// have background work (io.Closer). Call it after Run returned.
func (a *Agent) Close() error {
	_, serr := a.syncLocal()
	errs := []error{serr, a.db.Close()}
	for _, r := range a.recs {
		if c, ok := r.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Run converges the device until ctx is done, reading its manifest and
// publishing its events through nc (which may be disconnected, even at
// start: the agent then works from its stored manifest and keeps its events).
// When ctx ends it stops starting attempts, waits up to the shutdown grace
// for running ones, flushes the outbox if the log is reachable, and returns
// nil. It returns an error only when the local store fails. Run may be
// called once at a time.
func (a *Agent) Run(ctx context.Context, nc *nats.Conn) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: already running")
	}
	defer a.running.Store(false)
	conn, err := a.logConn(nc)
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stopBG()

	wg.Add(1)
	go func() { defer wg.Done(); a.drain(bg, conn) }()
	wg.Add(1)
	go func() { defer wg.Done(); a.watchConnection(bg, nc) }()

	// Measure the clock before the first event of this run is stamped, so
	// that a clock that ran ahead (persisted) is corrected before, not
	// after, the first manifest's events; the heartbeat loop checks again
	// every clockCheckEvery.
	if nc.IsConnected() {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		if local, server, err := a.measureClock(cctx, conn.log); err == nil {
			if _, err := a.checkClock(local, server); err != nil {
				a.log.Error("clock skew: not recorded", "err", err)
			}
		}
		cancel()
	}
	l := newLoop(a)
	if err := l.register(); err != nil {
		return err
	}
	manifests := make(chan manifestUpdate, 4)
	// the watch ends with the loop, also when the loop fails (a full disk):
	// Run then returns its error instead of waiting on the watch
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	wg.Add(1)
	go func() { defer wg.Done(); a.watchManifests(wctx, conn, manifests) }()
	beats := make(chan heartbeat, 1)
	wg.Add(1)
	go func() { defer wg.Done(); a.heartbeats(bg, conn, beats) }()

	if err := l.run(ctx, manifests, beats); err != nil {
		return err
	}
	// Flush what is left, bounded, if the log can be reached.
	if a.OutboxLen() > 0 && nc.IsConnected() {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if ferr := a.drainAll(fctx, conn); ferr != nil {
			a.log.Warn("shutdown: outbox not flushed; it is kept for the next start", "events", a.OutboxLen(), "err", ferr)
		}
		cancel()
	}
	return nil
}

// Flush publishes the outbox through nc until it is empty or ctx ends.
func (a *Agent) Flush(ctx context.Context, nc *nats.Conn) error {
	conn, err := a.logConn(nc)
	if err != nil {
		return err
	}
	return a.drainAll(ctx, conn)
}

// Deregister records DeviceDeregistered in the outbox (published by a
// running agent, or by Flush). reason may be empty.
func (a *Agent) Deregister(ctx context.Context, reason string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t := a.begin()
	if _, err := t.emit("", a.Generation(), "", "", &events.DeviceDeregistered{Reason: reason}); err != nil {
		t.abort()
		return err
	}
	_, err := t.commit()
	return err
}

// Handle is a started agent (see Start).
type Handle struct {
	Agent  *Agent
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// Start creates an agent and runs it in the background until Stop or ctx
// ends: the in-process way to run many agents (demo, tests).
func Start(ctx context.Context, nc *nats.Conn, device string, opts ...Option) (*Handle, error) {
	a, err := New(device, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := a.logConn(nc); err != nil { // no WithLog: say so now, not at Stop
		a.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	h := &Handle{Agent: a, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.err = a.Run(ctx, nc)
		if cerr := a.Close(); h.err == nil {
			h.err = cerr
		}
	}()
	return h, nil
}

// Stop ends the agent (as SIGTERM would), waits for it and returns Run's error.
func (h *Handle) Stop() error {
	h.cancel()
	return h.Wait()
}

// Wait waits until the agent has stopped and returns Run's error.
func (h *Handle) Wait() error {
	<-h.done
	return h.err
}

// stateDirFix is what to do about a state directory the agent may not write.
const stateDirFix = "under systemd the unit's StateDirectory=fleet-agent gives the agent /var/lib/fleet-agent (deploy/systemd/fleet-agent.service)"
