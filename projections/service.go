package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// Pebble layout of one read-model store.
var (
	keyCheckpoint = []byte("c")
	prefixFleet   = "f/" // + device: Fleet state (MarshalDevice)
	prefixDrift   = "d/" // + device: Drift state but the histories
	prefixHistory = "r/" // + device/resource: one resource's drift history
	prefixSkipped = "s/" // + 20-digit sequence: why a message was skipped
)

// currentFile names the active models directory inside the service's
// directory; a rebuild writes a new one and swaps by renaming this file.
const currentFile = "CURRENT"

// DefaultDurable is the durable consumer name of the projection service.
const DefaultDurable = "fleet-projections"

// Option configures a Service.
type Option func(*Service)

// WithDurable sets the durable consumer's name (one per service instance).
func WithDurable(name string) Option { return func(s *Service) { s.durable = name } }

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
	Batches    uint64  `json:"batches"`     // Pebble batches written since start
	FoldSecs   float64 `json:"foldSeconds"` // time spent folding and writing
	Devices    int     `json:"devices"`
	Rebuilding bool    `json:"rebuilding"`
	// Rebuild progress while Rebuilding: sequences done of total.
	RebuildDone  uint64 `json:"rebuildDone,omitempty"`
	RebuildTotal uint64 `json:"rebuildTotal,omitempty"`
}

// models is one read-model store: the folds in memory and their Pebble copy.
type models struct {
	dir        string
	db         *pebble.DB
	fleet      *Fleet
	drift      *Drift
	checkpoint uint64
}

// Service is the projection service: it consumes FLEET with a durable
// consumer, folds events in batches, and writes the read models with the
// checkpoint in one synced Pebble batch, so that a restart (also after kill
// -9) resumes at the checkpoint and never applies an event twice. Reads are
// served from memory and are safe for concurrent use with Run.
type Service struct {
	dir      string
	durable  string
	maxBatch int

	mu sync.RWMutex // guards m for readers; writers also hold applyMu
	m  *models

	applyMu sync.Mutex // one writer at a time: the live loop or a rebuild's swap

	streamLast   atomic.Uint64
	applied      atomic.Uint64
	skipped      atomic.Uint64
	batches      atomic.Uint64
	foldNanos    atomic.Int64
	rebuilding   atomic.Bool
	rebuildDone  atomic.Uint64
	rebuildTotal atomic.Uint64

	lmu       sync.Mutex
	listeners map[int]func(BatchInfo)
	nextL     int
	progress  chan struct{} // closed and replaced after every batch
}

// Open opens (or creates) the service's store in dir and loads the read
// models and checkpoint from it.
func Open(dir string, opts ...Option) (*Service, error) {
	s := &Service{dir: dir, durable: DefaultDurable, maxBatch: 5000, listeners: map[int]func(BatchInfo){}, progress: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("projections store %s: %w", dir, err)
	}
	name := "models-1"
	if b, err := os.ReadFile(filepath.Join(dir, currentFile)); err == nil {
		name = strings.TrimSpace(string(b))
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("projections store %s: %w", dir, err)
	} else if err := writeCurrent(dir, name); err != nil {
		return nil, err
	}
	m, err := openModels(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	s.m = m
	s.streamLast.Store(m.checkpoint)
	return s, nil
}

func writeCurrent(dir, name string) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o644); err != nil {
		return fmt.Errorf("projections store: %w", err)
	}
	f, err := os.Open(tmp)
	if err == nil {
		_ = f.Sync()
		f.Close()
	}
	if err := os.Rename(tmp, filepath.Join(dir, currentFile)); err != nil {
		return fmt.Errorf("projections store: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func openModels(dir string) (*models, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, fmt.Errorf("open read models %s: %w", dir, err)
	}
	m := &models{dir: dir, db: db, fleet: NewFleet(), drift: NewDrift()}
	if v, closer, err := db.Get(keyCheckpoint); err == nil {
		if len(v) == 8 {
			m.checkpoint = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		db.Close()
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	load := func(prefix string, fn func([]byte) error) error {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: []byte(prefix[:len(prefix)-1] + "0")})
		if err != nil {
			return err
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if err := fn(slices.Clone(it.Value())); err != nil {
				return fmt.Errorf("key %s: %w", it.Key(), err)
			}
		}
		return it.Error()
	}
	if err := load(prefixFleet, m.fleet.LoadDevice); err != nil {
		db.Close()
		return nil, fmt.Errorf("load read models %s: %w", dir, err)
	}
	if err := load(prefixDrift, m.drift.LoadDevice); err != nil {
		db.Close()
		return nil, fmt.Errorf("load read models %s: %w", dir, err)
	}
	if err := load(prefixHistory, m.drift.LoadResource); err != nil {
		db.Close()
		return nil, fmt.Errorf("load read models %s: %w", dir, err)
	}
	return m, nil
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// Close closes the store. Run must have returned.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		return nil
	}
	err := s.m.db.Close()
	s.m = nil
	return err
}

// item is one delivered message, decoded.
type item struct {
	seq     uint64
	pending uint64
	ev      events.Stored
	err     error
}

// apply folds a batch into m and writes the changed devices and the new
// checkpoint in one synced Pebble batch. Items at or below m's checkpoint
// (redeliveries) are skipped. The caller holds applyMu; readers are locked
// out only while the in-memory folds change.
func (s *Service) apply(m *models, items []item, live bool) (BatchInfo, error) {
	start := time.Now()
	info := BatchInfo{}
	dirty := map[string]bool{}
	dirtyRes := map[[2]string]bool{}
	b := m.db.NewBatch()
	defer b.Close()
	cp := m.checkpoint
	if live {
		s.mu.Lock()
	}
	for _, it := range items {
		if it.seq <= cp {
			continue // delivered again: already applied
		}
		if info.FromSeq == 0 {
			info.FromSeq = it.seq
		}
		cp = it.seq
		if it.err != nil {
			_ = b.Set([]byte(fmt.Sprintf("%s%020d", prefixSkipped, it.seq)), []byte(it.err.Error()), nil)
			s.skipped.Add(1)
			continue
		}
		m.fleet.Apply(it.ev)
		m.drift.Apply(it.ev)
		dirty[it.ev.Device] = true
		if it.ev.Resource != "" {
			dirtyRes[[2]string{it.ev.Device, it.ev.Resource}] = true
		}
		info.Events++
	}
	if live {
		s.mu.Unlock()
	}
	if cp == m.checkpoint {
		return info, nil
	}
	if live {
		s.mu.RLock()
	}
	for dev := range dirty {
		info.Devices = append(info.Devices, dev)
		if v, ok := m.fleet.MarshalDevice(dev); ok {
			_ = b.Set([]byte(prefixFleet+dev), v, nil)
		}
		if v, ok := m.drift.MarshalDevice(dev); ok {
			_ = b.Set([]byte(prefixDrift+dev), v, nil)
		}
	}
	for k := range dirtyRes {
		if v, ok := m.drift.MarshalResource(k[0], k[1]); ok {
			_ = b.Set([]byte(prefixHistory+k[0]+"/"+k[1]), v, nil)
		}
	}
	if live {
		s.mu.RUnlock()
	}
	slices.Sort(info.Devices)
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], cp)
	_ = b.Set(keyCheckpoint, v[:], nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return info, fmt.Errorf("write read models at sequence %d: %w", cp, err)
	}
	m.checkpoint = cp
	info.Checkpoint = cp
	info.Fold = time.Since(start)
	return info, nil
}

// Run consumes the stream from the checkpoint until ctx is done, applying
// events in batches. It returns nil when ctx is cancelled.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	st, err := jsstore.Attach(ctx, js)
	if err != nil {
		return err
	}
	if last, err := st.LastSeq(ctx); err == nil {
		s.noteLast(last)
	}
	for {
		err := s.consume(ctx, js)
		if ctx.Err() != nil {
			return nil
		}
		// the consumer was lost (server restart, consumer deleted): start again from the checkpoint
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		_ = err
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

// consume runs one durable consumer from checkpoint+1. The consumer acks
// nothing: the checkpoint in Pebble is the source of truth, so the consumer
// is recreated at the checkpoint on every start.
func (s *Service) consume(ctx context.Context, js jetstream.JetStream) error {
	s.applyMu.Lock()
	from := s.m.checkpoint + 1
	s.applyMu.Unlock()
	if err := js.DeleteConsumer(ctx, events.Stream, s.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("reset consumer %s: %w", s.durable, err)
	}
	cons, err := js.CreateConsumer(ctx, events.Stream, jetstream.ConsumerConfig{
		Durable: s.durable, Description: "fleet projection service (checkpoint kept in its Pebble store)",
		AckPolicy: jetstream.AckNonePolicy, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
		FilterSubject: events.AllSubjects, MaxAckPending: -1,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s: %w", s.durable, err)
	}
	return s.pump(ctx, cons, 0, func(items []item) error {
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		info, err := s.apply(s.m, items, true)
		if err != nil {
			return err
		}
		s.done(info)
		return nil
	})
}

// pump delivers messages from cons to apply in batches: whatever has arrived
// when the previous batch is written, up to maxBatch. It stops at ctx's end,
// on an error, or after sequence upTo (0: never).
func (s *Service) pump(ctx context.Context, cons jetstream.Consumer, upTo uint64, apply func([]item) error) error {
	ch := make(chan item, 2*s.maxBatch)
	errc := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		it := item{seq: md.Sequence.Stream, pending: md.NumPending}
		it.ev, it.err = jsstore.FromRaw(m.Subject(), md.Sequence.Stream, md.Timestamp, m.Data())
		select {
		case ch <- it:
		case <-ctx.Done():
		}
	}, jetstream.PullMaxMessages(4096), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			select {
			case errc <- err:
			default:
			}
		}
	}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer cc.Stop()
	batch := make([]item, 0, s.maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case it := <-ch:
			batch = append(batch, it)
		}
	drain:
		for len(batch) < s.maxBatch {
			select {
			case it := <-ch:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		last := batch[len(batch)-1]
		s.noteLast(last.seq + last.pending)
		if upTo > 0 {
			batch = slices.DeleteFunc(batch, func(it item) bool { return it.seq > upTo })
		}
		if err := apply(batch); err != nil {
			return err
		}
		if upTo > 0 && last.seq >= upTo {
			return nil
		}
	}
}

func (s *Service) done(info BatchInfo) {
	if info.Checkpoint == 0 {
		return
	}
	s.applied.Add(uint64(info.Events))
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

// Checkpoint returns the last stream sequence applied.
func (s *Service) Checkpoint() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.m == nil {
		return 0
	}
	return s.m.checkpoint
}

// Lag is the stream's last sequence minus the checkpoint.
func (s *Service) Lag() uint64 {
	cp, last := s.Checkpoint(), s.streamLast.Load()
	if last < cp {
		return 0
	}
	return last - cp
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	st := Stats{Checkpoint: s.Checkpoint(), StreamLast: s.streamLast.Load(), Applied: s.applied.Load(),
		Skipped: s.skipped.Load(), Batches: s.batches.Load(), FoldSecs: time.Duration(s.foldNanos.Load()).Seconds(),
		Rebuilding: s.rebuilding.Load(), RebuildDone: s.rebuildDone.Load(), RebuildTotal: s.rebuildTotal.Load()}
	if st.StreamLast > st.Checkpoint {
		st.Lag = st.StreamLast - st.Checkpoint
	} else {
		st.StreamLast = st.Checkpoint
	}
	s.mu.RLock()
	if s.m != nil {
		st.Devices = len(s.m.fleet.Devices())
	}
	s.mu.RUnlock()
	return st
}

// Device returns one device's read model.
func (s *Service) Device(id string) (Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.fleet.Device(id)
}

// Devices returns every device, sorted by id.
func (s *Service) Devices() []Device {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.fleet.Devices()
}

// Drift returns a device's drift history, or every device's if id is "".
func (s *Service) Drift(id string) []ResourceDrift {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id == "" {
		return s.m.drift.All()
	}
	return s.m.drift.Device(id)
}

// Explain explains one resource.
func (s *Service) Explain(device, resource string) (Explanation, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.fleet.Explain(device, resource)
}

// Dump returns every key and value of the active store (read models,
// checkpoint, skipped messages), for byte-equal comparisons.
func (s *Service) Dump() (map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return dump(s.m.db)
}

func dump(db *pebble.DB) (map[string]string, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out, it.Error()
}

// Rebuild builds the read models from sequence 1 into a fresh store while
// the current ones keep answering, then swaps them in and deletes the old
// store. progress, if not nil, is called now and then with the sequences
// done and the total. It may run while Run runs; the live loop pauses only
// for the final catch-up and the swap.
func (s *Service) Rebuild(ctx context.Context, js jetstream.JetStream, progress func(done, total uint64)) error {
	if !s.rebuilding.CompareAndSwap(false, true) {
		return fmt.Errorf("a rebuild is already running")
	}
	defer s.rebuilding.Store(false)
	st, err := jsstore.Attach(ctx, js)
	if err != nil {
		return err
	}
	total, err := st.LastSeq(ctx)
	if err != nil {
		return err
	}
	s.rebuildDone.Store(0)
	s.rebuildTotal.Store(total)
	name := "models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	nm, err := openModels(filepath.Join(s.dir, name))
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			nm.db.Close()
			os.RemoveAll(nm.dir)
		}
	}()
	report := func() {
		s.rebuildDone.Store(nm.checkpoint)
		if progress != nil {
			progress(nm.checkpoint, s.rebuildTotal.Load())
		}
	}
	report()
	if total > 0 {
		cons, err := js.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AllSubjects}})
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		lastReport := time.Now()
		err = s.pump(ctx, cons, total, func(items []item) error {
			if _, err := s.apply(nm, items, false); err != nil {
				return err
			}
			if time.Since(lastReport) > 500*time.Millisecond {
				lastReport = time.Now()
				report()
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
	}
	// catch up with the live models, then swap
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	target := s.m.checkpoint
	if target > nm.checkpoint {
		s.rebuildTotal.Store(target)
		var tail []item
		for ev, err := range st.Read(ctx, events.Filter{FromSeq: nm.checkpoint + 1, ToSeq: target}) {
			var bm *events.BadMessage
			switch {
			case err == nil:
				tail = append(tail, item{seq: ev.Seq, ev: ev})
			case errors.As(err, &bm):
				tail = append(tail, item{seq: bm.Seq, err: err})
			default:
				return fmt.Errorf("rebuild catch-up: %w", err)
			}
		}
		// a gap-free tail up to target: mark the checkpoint at target even
		// if the last messages were filtered out
		if _, err := s.apply(nm, tail, false); err != nil {
			return err
		}
	}
	report()
	if err := writeCurrent(s.dir, name); err != nil {
		return err
	}
	s.mu.Lock()
	old := s.m
	s.m = nm
	s.mu.Unlock()
	ok = true
	old.db.Close()
	os.RemoveAll(old.dir)
	s.done(BatchInfo{Checkpoint: nm.checkpoint, Devices: nm.fleet.DeviceIDs()})
	return nil
}
