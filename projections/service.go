package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
)

// Pebble layout of one read-model store: the checkpoint, the layout
// version, skipped messages, and the folds' parts (persist.go).
var (
	keyCheckpoint = []byte("c")
	keyLayout     = []byte("v")
)

// layout is the version of the key layout; a store without it (or with
// another) is left behind and the models are rebuilt from the log.
const layout = "2"

// currentFile names the active models directory inside the service's
// directory; a rebuild writes a new one and swaps by renaming this file.
const currentFile = "CURRENT"

// DefaultDurable is the name the projection service's follower has on the
// log's server (events.BatchOptions.Name: a durable consumer on JetStream).
const DefaultDurable = "fleet-projections"

// Option configures a Service.
type Option func(*Service)

// WithDurable sets the name of the service's follower on the log's server
// (one per service instance; "": unnamed).
func WithDurable(name string) Option { return func(s *Service) { s.durable = name } }

// WithSyncInterval was how often the live loop fsynced Pebble's log. The
// store now has none (StoreOptions: a full disk made it fatal): each batch
// is written atomically with its checkpoint into the memtable, written as a
// table at least every StoreFlushEvery, so a kill -9 or a power loss costs
// at most re-folding what was written since (the store opens at a prefix
// of its batches). Kept so callers build; it changes nothing.
func WithSyncInterval(d time.Duration) Option { return func(s *Service) { s.syncEvery = d } }

// WithModel registers one more read model, run beside the defaults
// (DefaultModels): folded, persisted with the checkpoint, reloaded on Open
// and rebuilt by Rebuild. Read it with Query. A store written without it
// (or with other models) is folded again from the log on Open.
func WithModel(f ModelFactory) Option {
	return func(s *Service) { s.factories = append(s.factories, f) }
}

// WithLogger sets where the service logs its consumer's failures (default
// slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.logger = l } }

// WithMaxBatch bounds how many events one Pebble batch applies (default 5,000).
func WithMaxBatch(n int) Option { return func(s *Service) { s.maxBatch = n } }

// BatchInfo describes one applied batch, for listeners (metrics, live updates).
type BatchInfo struct {
	Events     int           // events applied (duplicates and bad messages excluded)
	FromSeq    uint64        // first sequence in the batch
	Checkpoint uint64        // checkpoint after it
	Devices    []string      // devices whose read models changed, sorted
	Fold       time.Duration // time to fold and write the batch
}

// Stats are the service's counters.
type Stats struct {
	Checkpoint uint64  `json:"checkpoint"`  // last stream sequence applied
	StreamLast uint64  `json:"streamLast"`  // last stream sequence known
	Lag        uint64  `json:"lag"`         // StreamLast - Checkpoint
	Applied    uint64  `json:"applied"`     // events applied since start
	Skipped    uint64  `json:"skipped"`     // bad messages skipped since start
	Forged     uint64  `json:"forged"`      // of those, forged events (events.CheckWriter)
	Batches    uint64  `json:"batches"`     // Pebble batches written since start
	FoldSecs   float64 `json:"foldSeconds"` // time spent folding and writing
	Devices    int     `json:"devices"`
	// Failures of the consumer since start (each logged, rate-limited), and
	// the last one's cause while they go on ("" once it advances again).
	Failures    uint64 `json:"failures"`
	LastFailure string `json:"lastFailure,omitempty"`
	Rebuilding  bool   `json:"rebuilding"`
	// Rebuild progress while Rebuilding: sequences done of total.
	RebuildDone  uint64 `json:"rebuildDone,omitempty"`
	RebuildTotal uint64 `json:"rebuildTotal,omitempty"`
}

// models is one read-model store: the registered read models in memory and
// their Pebble copy.
type models struct {
	dir        string
	db         *pebble.DB
	kinds      modelSet
	set        []ReadModel // one of each registered model, in registration order
	byKind     [256]ReadModel
	checkpoint uint64        // last sequence written to Pebble with the parts
	applied    uint64        // last sequence folded in memory (>= checkpoint)
	recs       []RecordModel // those of set that write their own records (records.go)
	dirty      Dirty
	allDirty   bool   // every part will be written (a rebuild): apply need not note which
	skipped    []skip // bad messages not yet written
}

// Service is the projection service: it follows the log (Log.Batches),
// folds events in batches, and writes the read models with the
// checkpoint in one synced Pebble batch, so that a restart (also after kill
// -9) resumes at the checkpoint and never applies an event twice. Reads are
// served from memory and are safe for concurrent use with Run.
type Service struct {
	dir       string
	name      string // WithName: in messages and on the store
	logAction string // WithLogAction: what to do about a log that lost what was taken in
	durable   string
	factories []ModelFactory // WithModel's, after DefaultModels
	kinds     modelSet
	maxBatch  int
	syncEvery time.Duration

	syncMu   sync.Mutex  // held while the log is synced; and to close a store
	unsynced atomic.Bool // a batch was written without sync

	mu sync.RWMutex // guards m for readers; writers also hold applyMu
	m  *models

	applyMu sync.Mutex // one writer at a time: the live loop or a rebuild's swap

	streamLast   atomic.Uint64
	applied      atomic.Uint64
	skipped      atomic.Uint64
	forged       atomic.Uint64
	batches      atomic.Uint64
	foldNanos    atomic.Int64
	rebuilding   atomic.Bool
	rebuildDone  atomic.Uint64
	rebuildTotal atomic.Uint64

	guard logGuard // halts the service on a log that went backwards (health.go)

	part *events.Partition // WithPartition: fold only these devices (partition.go)

	lmu       sync.Mutex
	listeners map[int]func(BatchInfo)
	nextL     int
	progress  chan struct{} // closed and replaced after every batch

	recovered string // why Open started from an empty store (recover.go)

	logger     *slog.Logger
	fails      *FailureLog
	advancedAt atomic.Int64 // unix nanoseconds of the checkpoint's last move (or of Open)
}

// Open opens (or creates) the service's store in dir and loads the read
// models and checkpoint from it. A store written with another key layout is
// set aside: the models start empty and are folded again from the log.
func Open(dir string, opts ...Option) (*Service, error) {
	s := &Service{dir: dir, name: DefaultName, logAction: RebuildAction, durable: DefaultDurable, maxBatch: 5000, syncEvery: 50 * time.Millisecond,
		listeners: map[int]func(BatchInfo){}, progress: make(chan struct{}), factories: DefaultModels()}
	for _, o := range opts {
		o(s)
	}
	what := "projections" // in Open's errors, as before WithName
	if s.name != DefaultName {
		what = s.name
	}
	kinds, err := newModelSet(s.name, s.factories)
	if err != nil {
		return nil, fmt.Errorf("%s store %s: %w", what, dir, err)
	}
	s.kinds = kinds
	s.fails = NewFailureLog(s.logger, s.failureText(), nil)
	s.advancedAt.Store(time.Now().UnixNano())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s store %s: %w", what, dir, err)
	}
	name := "models-1"
	if b, err := os.ReadFile(filepath.Join(dir, currentFile)); err == nil {
		name = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s store %s: %w", what, dir, err)
	} else if err := writeCurrent(dir, name); err != nil {
		return nil, err
	}
	m, err := openModels(filepath.Join(dir, name), s.kinds)
	if errors.Is(err, errOldLayout) {
		m.db.Close()
		name = "models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if m, err = openModels(filepath.Join(dir, name), s.kinds); err == nil {
			err = writeCurrent(dir, name)
		}
	} else if damaged(err) {
		m, name, err = s.rebuildDamaged(name, err) // recover.go
	}
	if err != nil {
		return nil, err
	}
	s.m = m
	s.streamLast.Store(m.checkpoint)
	removeOthers(dir, name)
	return s, nil
}

// Close closes the store. Run must have returned.
func (s *Service) Close() error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		return nil
	}
	if s.unsynced.Swap(false) {
		_ = s.m.db.LogData(nil, pebble.Sync)
	}
	err := closeStore(s.m.db)
	s.m = nil
	return err
}

// Run follows the log from the checkpoint until ctx is done, applying
// events in batches. It returns nil when ctx is cancelled.
func (s *Service) Run(ctx context.Context, log Log) error {
	if st, err := log.State(ctx); err == nil {
		s.noteLast(st.LastSeq)
	} else if ctx.Err() != nil {
		return nil
	}
	if s.syncEvery > 0 {
		go s.syncer(ctx)
	}
	s.checkLog(ctx, log) // before the first event: never fold onto a log that went backwards
	go s.watchLog(ctx, log)
	return FollowLog(ctx, log, (*serviceConsumer)(s), FollowOptions{
		Name: s.durable, Max: s.maxBatch, Fails: s.fails, Gate: s.consumeContext, Stopped: s.Halted, Skip: s.skip(),
	})
}

// syncer fsyncs the store's log every syncEvery while batches are written
// without sync, off the folding goroutine.
func (s *Service) syncer(ctx context.Context) {
	t := time.NewTicker(s.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.unsynced.Swap(false) {
			continue
		}
		s.syncMu.Lock()
		s.mu.RLock()
		m := s.m
		s.mu.RUnlock()
		if m != nil {
			_ = m.db.LogData(nil, pebble.Sync)
		}
		s.syncMu.Unlock()
	}
}

func (s *Service) noteLast(seq uint64) {
	for {
		cur := s.streamLast.Load()
		if seq <= cur || s.streamLast.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (s *Service) done(info BatchInfo) {
	if info.Checkpoint == 0 {
		return
	}
	s.applied.Add(uint64(info.Events))
	s.advancedAt.Store(time.Now().UnixNano())
	s.fails.OK()
	s.batches.Add(1)
	s.foldNanos.Add(int64(info.Fold))
	s.lmu.Lock()
	ls := make([]func(BatchInfo), 0, len(s.listeners))
	for _, l := range s.listeners {
		ls = append(ls, l)
	}
	close(s.progress)
	s.progress = make(chan struct{})
	s.lmu.Unlock()
	for _, l := range ls {
		l(info)
	}
}

// OnBatch registers fn to be called after every applied batch (from the
// service's goroutine: keep it quick). It returns a function that removes it.
func (s *Service) OnBatch(fn func(BatchInfo)) (remove func()) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	id := s.nextL
	s.nextL++
	s.listeners[id] = fn
	return func() {
		s.lmu.Lock()
		delete(s.listeners, id)
		s.lmu.Unlock()
	}
}

// WaitFor blocks until the checkpoint reaches seq or ctx is done.
func (s *Service) WaitFor(ctx context.Context, seq uint64) error {
	for {
		s.lmu.Lock()
		ch := s.progress
		s.lmu.Unlock()
		if s.Checkpoint() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}
