package projections

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
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

// DefaultDurable is the durable consumer name of the projection service.
const DefaultDurable = "fleet-projections"

// Option configures a Service.
type Option func(*Service)

// WithDurable sets the durable consumer's name (one per service instance).
func WithDurable(name string) Option { return func(s *Service) { s.durable = name } }

// WithSyncInterval sets how often the live loop fsyncs Pebble's log
// (default 50ms; 0: every batch). Each batch is written atomically with its
// checkpoint and reaches the OS at once, so a kill -9 loses nothing; the
// models are derived from the log, so a power loss costs at most re-folding
// what the last interval wrote (Pebble recovers a prefix of the batches).
func WithSyncInterval(d time.Duration) Option { return func(s *Service) { s.syncEvery = d } }

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
	checkpoint uint64 // last sequence written to Pebble with the parts
	applied    uint64 // last sequence folded in memory (>= checkpoint)
	dirty      map[part]struct{}
	allDirty   bool   // every part will be written (a rebuild): apply need not note which
	skipped    []item // bad messages not yet written
}

// Service is the projection service: it consumes FLEET with a durable
// consumer, folds events in batches, and writes the read models with the
// checkpoint in one synced Pebble batch, so that a restart (also after kill
// -9) resumes at the checkpoint and never applies an event twice. Reads are
// served from memory and are safe for concurrent use with Run.
type Service struct {
	dir       string
	durable   string
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

	lmu       sync.Mutex
	listeners map[int]func(BatchInfo)
	nextL     int
	progress  chan struct{} // closed and replaced after every batch

	recovered string // why Open started from an empty store (recover.go)
}

// Open opens (or creates) the service's store in dir and loads the read
// models and checkpoint from it. A store written with another key layout is
// set aside: the models start empty and are folded again from the log.
func Open(dir string, opts ...Option) (*Service, error) {
	s := &Service{dir: dir, durable: DefaultDurable, maxBatch: 5000, syncEvery: 50 * time.Millisecond,
		listeners: map[int]func(BatchInfo){}, progress: make(chan struct{})}
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
	if errors.Is(err, errOldLayout) {
		m.db.Close()
		name = "models-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		if m, err = openModels(filepath.Join(dir, name)); err == nil {
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

// removeOthers deletes models directories other than the current one: left
// by a rebuild that did not finish, or by an older layout.
func removeOthers(dir, current string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), "models-") && e.Name() != current {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
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

var errOldLayout = errors.New("read models written with another key layout")

// openModels opens a store and loads its folds. With errOldLayout the
// returned models are open but hold data of another layout.
func openModels(dir string) (*models, error) {
	o := StoreOptions(quiet{})
	o.EventListener = corruptionReturned()
	db, err := pebble.Open(dir, o)
	if err != nil {
		return nil, fmt.Errorf("open read models %s: %w", dir, err)
	}
	m := &models{dir: dir, db: db, dirty: map[part]struct{}{}}
	cp, err := get(db, keyCheckpoint)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	v, err := get(db, keyLayout)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("read layout: %w", err)
	}
	if cp != nil && string(v) != layout {
		return m, errOldLayout
	}
	if len(cp) == 8 {
		m.checkpoint = binary.BigEndian.Uint64(cp)
	}
	m.applied = m.checkpoint
	if err := m.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("load read models %s: %w", dir, err)
	}
	return m, nil
}

func get(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return slices.Clone(v), nil
}

// load reads the folds from Pebble: headers before the parts beneath them.
func (m *models) load() error {
	m.fleet, m.drift = NewFleet(), NewDrift()
	for _, prefix := range []string{prefixFleet, prefixManifest, prefixResource, prefixDrift, prefixHistory} {
		it, err := m.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: []byte(prefix[:1] + "0")})
		if err != nil {
			return err
		}
		for it.First(); it.Valid(); it.Next() {
			if err := loadPart(m.fleet, m.drift, it.Key(), slices.Clone(it.Value())); err != nil {
				it.Close()
				return fmt.Errorf("%w: %w", errBadPart, err)
			}
		}
		if err := it.Close(); err != nil {
			return err
		}
	}
	return nil
}

type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
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

// item is one delivered message: its raw form until a decoder has decoded it.
type item struct {
	seq     uint64
	pending uint64
	ev      events.Stored
	err     error

	subject string    // raw message, cleared once decoded
	at      time.Time // stream time
	data    []byte
}

// decode decodes the item's raw message and lets go of it.
func (it *item) decode() {
	it.ev, it.err = jsstore.FromRawOwned(it.subject, it.seq, it.at, it.data) // the message's buffer is the event's now
	it.subject, it.data = "", nil
}

// chunk is a slice of delivered messages on its way to the fold: decoded on
// one of the decoder goroutines, folded in delivery order.
type chunk struct {
	items   []item
	decoded chan struct{} // closed once items are decoded
}

// apply folds items into m's folds in memory and notes the parts they
// change; flush writes them. Items at or below what m has applied
// (redeliveries) are skipped. The caller holds applyMu (or owns m alone);
// with live, readers are locked out while the folds change.
func (s *Service) apply(m *models, items []item, live bool) BatchInfo {
	return s.applyParts(m, [][]item{items}, live)
}

// applyParts is apply for items in parts, in order.
func (s *Service) applyParts(m *models, parts [][]item, live bool) BatchInfo {
	info := BatchInfo{}
	if live {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	for _, items := range parts {
		s.applyItems(m, items, &info)
	}
	return info
}

func (s *Service) applyItems(m *models, items []item, info *BatchInfo) {
	for i := range items {
		it := &items[i]
		if it.seq <= m.applied {
			continue // delivered again: already applied
		}
		if info.FromSeq == 0 {
			info.FromSeq = it.seq
		}
		m.applied = it.seq
		if it.err == nil && !events.WrittenByItsWriter(it.ev.Event) {
			it.err = events.CheckWriter(it.ev) // forged: reported with its sequence like a bad message, not folded
		}
		if it.err != nil {
			m.skipped = append(m.skipped, item{seq: it.seq, err: it.err})
			continue
		}
		m.fleet.Apply(it.ev)
		m.drift.Apply(it.ev)
		if !m.allDirty {
			touched(m.dirty, it.ev)
		}
		info.Events++
	}
}

// flush writes the parts changed since the last flush, the skipped messages
// and the checkpoint in one Pebble batch, synced if sync: a kill at any
// moment leaves the parts and the checkpoint of one and the same sequence.
// It fills info's Devices and Checkpoint. If the write fails, the folds are
// read back from Pebble, so memory never runs ahead of what is stored.
func (s *Service) flush(m *models, sync, live bool, info *BatchInfo) error {
	if m.applied == m.checkpoint {
		return nil
	}
	// encode first, so that the batch is made at its size (a rebuild
	// writes every part at once: growing the batch would copy it again and again)
	type kv struct{ k, v []byte }
	kvs := make([]kv, 0, len(m.dirty))
	size := 1 << 10
	for p := range m.dirty {
		if p.kind == 'f' {
			info.Devices = append(info.Devices, p.device)
		}
		x := kv{k: p.key()}
		if v, ok := encodePart(m.fleet, m.drift, p); ok {
			x.v = v
		}
		kvs = append(kvs, x)
		size += len(x.k) + len(x.v) + 16
	}
	b := m.db.NewBatchWithSize(size)
	defer b.Close()
	for _, x := range kvs {
		if x.v != nil {
			_ = b.Set(x.k, x.v, nil)
		} else {
			_ = b.Delete(x.k, nil)
		}
	}
	for _, it := range m.skipped {
		_ = b.Set([]byte(fmt.Sprintf("%s%020d", prefixSkipped, it.seq)), []byte(it.err.Error()), nil)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], m.applied)
	_ = b.Set(keyCheckpoint, v[:], nil)
	_ = b.Set(keyLayout, []byte(layout), nil)
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		err = fmt.Errorf("write read models at sequence %d: %w", m.applied, err)
		if live {
			s.mu.Lock()
			defer s.mu.Unlock()
		}
		if lerr := m.load(); lerr != nil {
			return errors.Join(err, fmt.Errorf("read models back: %w", lerr))
		}
		m.applied = m.checkpoint
		clear(m.dirty)
		m.skipped = m.skipped[:0]
		return err
	}
	s.skipped.Add(uint64(len(m.skipped)))
	for _, it := range m.skipped {
		if errors.Is(it.err, events.ErrForged) {
			s.forged.Add(1)
		}
	}
	m.skipped = m.skipped[:0]
	clear(m.dirty)
	if live { // readers (Checkpoint, Lag) read it under s.mu
		s.mu.Lock()
	}
	m.checkpoint = m.applied
	if live {
		s.mu.Unlock()
	}
	info.Checkpoint = m.checkpoint
	slices.Sort(info.Devices)
	return nil
}

// Run consumes the stream from the checkpoint until ctx is done, applying
// events in batches. It returns nil when ctx is cancelled.
func (s *Service) Run(ctx context.Context, js jetstream.JetStream) error {
	st, err := jsstore.Attach(ctx, js)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if last, err := st.LastSeq(ctx); err == nil {
		s.noteLast(last)
	}
	if s.syncEvery > 0 {
		go s.syncer(ctx)
	}
	s.checkLog(ctx, st) // before the first event: never fold onto a log that went backwards
	go s.watchLog(ctx, st)
	for {
		cctx, cancel, ok := s.consumeContext(ctx)
		if !ok { // halted until a rebuild (see Health)
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		err := s.consume(cctx, js)
		cancel()
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

// consume runs one durable consumer from checkpoint+1. The consumer acks
// nothing: the checkpoint in Pebble is the source of truth, so the consumer
// is recreated at the checkpoint on every start.
func (s *Service) consume(ctx context.Context, js jetstream.JetStream) error {
	s.applyMu.Lock()
	from := s.m.applied + 1
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
	return s.pump(ctx, cons, 0, func(parts [][]item) error {
		start := time.Now()
		s.applyMu.Lock()
		defer s.applyMu.Unlock()
		info := s.applyParts(s.m, parts, true)
		if err := s.flush(s.m, s.syncEvery <= 0, true, &info); err != nil {
			return err
		}
		if s.syncEvery > 0 {
			s.unsynced.Store(true)
		}
		info.Fold = time.Since(start)
		s.done(info)
		return nil
	})
}

// handoff is how many decoded messages the consumer's callback hands the
// folding goroutine at once; it hands fewer when the stream has nothing
// more pending or the first of them has waited handoffWait.
const (
	handoff     = 256
	handoffWait = time.Millisecond
)

// pump delivers messages from cons to apply in batches: whatever has arrived
// when the previous batch is written, up to maxBatch. The consumer's
// callback hands messages over in chunks (see handoff: a lone event is not
// held back); decoders (one a CPU) decode the chunks side by side, and the
// fold takes them in delivery order while the previous batch is folded and
// written: a three-stage pipeline. It stops at ctx's end, on an error, or
// after sequence upTo (0: never).
func (s *Service) pump(ctx context.Context, cons jetstream.Consumer, upTo uint64, apply func([][]item) error) error {
	ch := make(chan *chunk, 2*s.maxBatch/handoff+2) // in delivery order, to the fold
	work := make(chan *chunk, cap(ch))              // to the decoders
	free := make(chan []item, cap(ch)+2)
	quit := make(chan struct{})
	defer close(quit)
	for range decoders() {
		go func() {
			for {
				select {
				case c := <-work:
					for i := range c.items {
						c.items[i].decode()
					}
					close(c.decoded)
				case <-quit:
					return
				}
			}
		}()
	}
	errc := make(chan error, 1)
	var pend []item // the callback's alone
	var since time.Time
	cc, err := cons.Consume(func(m jetstream.Msg) {
		seq, pending, at, ok := ackMetadata(m.Reply())
		if !ok {
			md, err := m.Metadata()
			if err != nil {
				return
			}
			seq, pending, at = md.Sequence.Stream, md.NumPending, md.Timestamp
		}
		now := time.Now()
		if pend == nil {
			select {
			case pend = <-free:
			default:
				pend = make([]item, 0, handoff)
			}
			since = now
		}
		pend = append(pend, item{seq: seq, pending: pending, subject: m.Subject(), at: at, data: m.Data()})
		if len(pend) >= handoff || pending == 0 || now.Sub(since) >= handoffWait || (upTo > 0 && seq >= upTo) {
			c := &chunk{items: pend, decoded: make(chan struct{})}
			pend = nil
			select {
			case work <- c:
			case <-ctx.Done():
				return
			case <-quit:
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
			case <-quit:
			}
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
	// A batch is the chunks' items as they are (not copied); the chunks go
	// back to the callback once applied. Their items are overwritten as it
	// fills them again, so what a chunk in the free list still holds is
	// bounded by the list's length.
	var batch [][]item
	n := 0 // items in batch
	take := func(c *chunk) bool {
		select {
		case <-c.decoded:
		case <-ctx.Done():
			return false
		}
		batch = append(batch, c.items)
		n += len(c.items)
		return true
	}
	release := func() {
		for _, items := range batch {
			select {
			case free <- items[:0]:
			default:
			}
		}
		clear(batch)
		batch, n = batch[:0], 0
	}
	for {
		release()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case c := <-ch:
			if !take(c) {
				return ctx.Err()
			}
		}
	drain:
		for n < s.maxBatch {
			select {
			case c := <-ch:
				if !take(c) {
					return ctx.Err()
				}
			default:
				break drain
			}
		}
		lastPart := batch[len(batch)-1]
		last := lastPart[len(lastPart)-1]
		s.noteLast(last.seq + last.pending)
		if upTo > 0 {
			for i, items := range batch {
				batch[i] = slices.DeleteFunc(items, func(it item) bool { return it.seq > upTo })
			}
		}
		if err := apply(batch); err != nil {
			return err
		}
		if upTo > 0 && last.seq >= upTo {
			return nil
		}
	}
}

// ackMetadata reads a delivered message's stream sequence, pending count
// and stream time from its reply subject, as jetstream.Msg.Metadata does
// but without building the metadata (it runs for every message, on the
// connection's goroutine). ok false: not a form it knows; use Metadata.
//
//	$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>
//	$JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<tm>.<pending>[.<token>]
func ackMetadata(reply string) (seq, pending uint64, at time.Time, ok bool) {
	const prefix = "$JS.ACK."
	if len(reply) <= len(prefix) || reply[:len(prefix)] != prefix {
		return 0, 0, time.Time{}, false
	}
	// the tokens after the prefix, by the positions of the dots between them
	var dots [11]int
	n := 0
	for i := len(prefix); i < len(reply); i++ {
		if reply[i] == '.' {
			if n == len(dots) {
				return 0, 0, time.Time{}, false // more tokens than either form has
			}
			dots[n] = i
			n++
		}
	}
	tok := func(i int) string { // i-th token after the prefix; 0 <= i <= n
		from, to := len(prefix), len(reply)
		if i > 0 {
			from = dots[i-1] + 1
		}
		if i < n {
			to = dots[i]
		}
		return reply[from:to]
	}
	first := 0 // of delivered, sseq, cseq, tm, pending
	switch n + 1 {
	case 7: // v1
		first = 2
	case 9, 10: // v2, with or without the last token
		first = 4
	default:
		return 0, 0, time.Time{}, false
	}
	seq, ok1 := number(tok(first + 1))
	ts, ok2 := number(tok(first + 3))
	pending, ok3 := number(tok(first + 4))
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, time.Time{}, false
	}
	return seq, pending, time.Unix(0, int64(ts)), true
}

// number parses a reply subject's decimal token.
func number(s string) (uint64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// decoders is how many goroutines decode delivered messages: one a CPU.
func decoders() int { return max(1, runtime.GOMAXPROCS(0)) }

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
		Skipped: s.skipped.Load(), Forged: s.forged.Load(), Batches: s.batches.Load(), FoldSecs: time.Duration(s.foldNanos.Load()).Seconds(),
		Rebuilding: s.rebuilding.Load(), RebuildDone: s.rebuildDone.Load(), RebuildTotal: s.rebuildTotal.Load()}
	if st.StreamLast > st.Checkpoint {
		st.Lag = st.StreamLast - st.Checkpoint
	} else {
		st.StreamLast = st.Checkpoint
	}
	s.mu.RLock()
	if s.m != nil { // counted, not copied: Stats is asked for by every open stream
		for _, d := range s.m.fleet.devices {
			if !d.Deregistered {
				st.Devices++
			}
		}
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

// DeviceIDs returns the id of every device the read model knows, sorted
// (deregistered ones too: Device says false for them). It copies no device,
// so listing a page of a large fleet costs the page, not the fleet.
func (s *Service) DeviceIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.fleet.DeviceIDs()
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
	// A rebuild allocates fast and keeps little (the folds are small next to
	// the stream): collect garbage less often while it runs.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
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
		s.rebuildDone.Store(nm.applied)
		if progress != nil {
			progress(nm.applied, s.rebuildTotal.Load())
		}
	}
	report()
	// Fold in memory; write the whole state once at the end (unsynced, then
	// the tail synced): nothing is read from this store before the swap,
	// and an interrupted rebuild starts over.
	if total > 0 {
		cons, err := js.OrderedConsumer(ctx, events.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AllSubjects}})
		if err != nil {
			return fmt.Errorf("rebuild: %w", err)
		}
		lastReport := time.Now()
		nm.allDirty = true // written whole below
		err = s.pump(ctx, cons, total, func(parts [][]item) error {
			s.applyParts(nm, parts, false)
			if len(nm.skipped) > 10000 {
				if err := s.flush(nm, false, false, &BatchInfo{}); err != nil {
					return err
				}
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
	nm.allDirty = false
	clear(nm.dirty)
	for _, p := range allParts(nm.fleet, nm.drift) {
		nm.dirty[p] = struct{}{}
	}
	if err := s.flush(nm, false, false, &BatchInfo{}); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	// catch up with the live models, then swap
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	target := s.m.applied
	if s.Halted() {
		target = nm.applied // the live models folded events the log no longer has: take the log as it is
	}
	if target > nm.applied {
		s.rebuildTotal.Store(target)
		var tail []item
		for ev, err := range st.Read(ctx, events.Filter{FromSeq: nm.applied + 1, ToSeq: target}) {
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
		s.apply(nm, tail, false)
		// gap-free up to target: mark it even if the last messages were not delivered
		nm.applied = max(nm.applied, target)
	}
	if err := s.flush(nm, true, false, &BatchInfo{}); err != nil {
		return fmt.Errorf("rebuild: %w", err)
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
	s.syncMu.Lock()
	old.db.Close()
	s.syncMu.Unlock()
	os.RemoveAll(old.dir)
	s.liftHalt()
	s.done(BatchInfo{Checkpoint: nm.checkpoint, Devices: nm.fleet.DeviceIDs()})
	return nil
}
