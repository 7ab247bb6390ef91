package embedded

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fleet-dev/fleet/internal/hint"
)

// limitMemory is how long a "resource limits exceeded" from the server keeps
// the health failing (the server repeats it at most every 10 s while writes
// are refused).
const limitMemory = 30 * time.Second

// DefaultMinFree is the free space the store's file system must have for
// the server to count as healthy, and before JetStream is started again
// after a full disk: two of the largest messages (the max payload).
const DefaultMinFree = 4 << 20

// Health is the embedded JetStream server's verdict on itself.
type Health struct {
	OK               bool   `json:"ok"`
	Reason           string `json:"reason,omitempty"`
	Action           string `json:"action,omitempty"`
	JetStreamEnabled bool   `json:"jetstreamEnabled"`
	FreeBytes        uint64 `json:"freeBytes"`
	Recoveries       int    `json:"recoveries"` // times JetStream was started again after a full disk
}

// diskState is what the logger and the watcher know of the store's disk.
type diskState struct {
	mu         sync.Mutex
	writeErr   string    // a write the store failed (no space, I/O error), since JetStream last started
	limitAt    time.Time // when the server last said its storage limit (max_store) was exceeded
	limitMsg   string
	restarting bool // JetStream is being started again
	recoveries int
}

// noteProblem marks a store write failure from the server's log: after one
// the file store refuses every write (and publishes time out) until
// JetStream is started again.
func (d *diskState) noteProblem(msg string) {
	if strings.Contains(msg, "resource limits exceeded") {
		d.mu.Lock()
		d.limitAt, d.limitMsg = time.Now(), msg
		d.mu.Unlock()
		return
	}
	if !strings.Contains(msg, "no space left on device") && !strings.Contains(msg, "Critical write error") {
		return // (a server disabling JetStream is seen by JetStreamEnabled)
	}
	d.mu.Lock()
	if d.writeErr == "" {
		d.writeErr = msg
	}
	d.mu.Unlock()
}

// freeBytes is the space left to unprivileged writers on dir's file system.
func freeBytes(dir string) (uint64, error) {
	free, _, err := hint.Space(dir)
	return free, err
}

// Health reports whether JetStream is enabled, stores what it is sent and
// has room: on a full disk JetStream fails writes (or disables itself), and
// the reason names what happened and what to do.
func (s *Server) Health() Health {
	h := Health{OK: true, JetStreamEnabled: s.JetStreamEnabled()}
	free, ferr := freeBytes(s.opts.Dir)
	h.FreeBytes = free
	s.disk.mu.Lock()
	werr, restarting := s.disk.writeErr, s.disk.restarting
	limited := time.Since(s.disk.limitAt) < limitMemory
	limitMsg := s.disk.limitMsg
	h.Recoveries = s.disk.recoveries
	s.disk.mu.Unlock()
	minFree := s.minFree()
	switch {
	case restarting:
		h.OK, h.Reason = false, "JetStream is starting again after a full disk"
	case !h.JetStreamEnabled:
		h.OK, h.Reason = false, "JetStream is disabled"
		if werr != "" {
			h.Reason += ": " + werr
		}
	case werr != "":
		h.OK, h.Reason = false, "the JetStream store failed a write and takes no more: "+werr
	case limited:
		h.OK, h.Reason = false, "JetStream refuses writes: "+limitMsg+" (the server's max_store, set at start from the free disk)"
	case ferr == nil && free < minFree:
		h.OK, h.Reason = false, fmt.Sprintf("the disk of %s is nearly full: %d bytes free, fewer than %d", s.opts.Dir, free, minFree)
	}
	if !h.OK {
		h.Action = fmt.Sprintf("free space on the file system of %s (fleet export, then a shorter --retention-max-age or "+
			"--retention-max-bytes; or a larger disk): JetStream starts again by itself once %d bytes are free, no restart needed",
			s.opts.Dir, minFree)
	}
	return h
}

func (s *Server) minFree() uint64 {
	if s.opts.MinFree > 0 {
		return uint64(s.opts.MinFree)
	}
	return DefaultMinFree
}

// watchDisk starts JetStream again once space has returned after a failed
// write or JetStream disabled itself: the file store refuses every write
// after one failure, and only a new start of JetStream (in this process,
// ShutdownJetStream then EnableJetStream with the first configuration)
// clears it. Streams, consumers and stored messages are recovered from disk.
func (s *Server) watchDisk(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		}
		s.disk.mu.Lock()
		broken := s.disk.writeErr != ""
		s.disk.mu.Unlock()
		if !broken && s.JetStreamEnabled() {
			continue
		}
		if free, err := freeBytes(s.opts.Dir); err != nil || free < s.minFree() {
			continue
		}
		if err := s.restartJetStream(); err != nil {
			s.log.Errorf("fleet: starting JetStream again after a full disk: %v", err)
			continue
		}
	}
}

func (s *Server) restartJetStream() error {
	s.disk.mu.Lock()
	s.disk.restarting = true
	s.disk.mu.Unlock()
	defer func() {
		s.disk.mu.Lock()
		s.disk.restarting = false
		s.disk.mu.Unlock()
	}()
	if s.JetStreamEnabled() {
		if err := s.ShutdownJetStream(); err != nil {
			return err
		}
	}
	c := s.jsConfig
	cfg := &server.JetStreamConfig{StoreDir: s.opts.Dir, MaxStore: c.MaxStore, MaxMemory: c.MaxMemory,
		SyncInterval: c.SyncInterval, SyncAlways: c.SyncAlways, Strict: c.Strict, Domain: c.Domain}
	if err := s.EnableJetStream(cfg); err != nil {
		return err
	}
	s.disk.mu.Lock()
	s.disk.writeErr = "" // failures logged while it started again are of the old store
	s.disk.recoveries++
	s.disk.mu.Unlock()
	s.log.Warnf("fleet: space returned on %s: JetStream started again", s.opts.Dir)
	return nil
}
