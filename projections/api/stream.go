package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// The live stream (GET /api/stream) sends change notices, never read
// models: "changed" {"devices":[ids]} (or {"all":true} when more than
// maxPendingIDs changed before the client read them), and "status" (the
// service's counters) on connect and every statusEvery. A client fetches
// what it shows (a page of summaries, one device) when a notice names it.
//
// Bounds: a client holds at most maxPendingIDs pending ids, however slow
// it reads; a write that takes longer than writeTimeout drops the client
// (Status.Streams says how many and why); at most hub.max streams are open
// at once, more are refused with 503 and the reason.
const (
	maxPendingIDs = 256
	writeTimeout  = 10 * time.Second
	statusEvery   = 2 * time.Second
	defaultMax    = 1000
)

// StreamStats describe the live streams.
type StreamStats struct {
	Open     int       `json:"open"`
	Dropped  uint64    `json:"dropped"`            // streams the server closed on a slow or gone client
	Refused  uint64    `json:"refused"`            // streams refused because max were open
	LastDrop string    `json:"lastDrop,omitempty"` // why the last one was dropped
	LastAt   time.Time `json:"lastDropAt,omitzero"`
	Max      int       `json:"max"`
}

// subscriber is one open stream: the ids changed since it last wrote.
type subscriber struct {
	mu      sync.Mutex
	pending map[string]struct{}
	all     bool
	wake    chan struct{}
}

func (s *subscriber) add(ids []string) {
	s.mu.Lock()
	if !s.all {
		for _, id := range ids {
			s.pending[id] = struct{}{}
		}
		if len(s.pending) > maxPendingIDs {
			s.all, s.pending = true, map[string]struct{}{}
		}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take returns and clears what is pending: sorted ids, or all.
func (s *subscriber) take() ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := s.all
	ids := make([]string, 0, len(s.pending))
	for id := range s.pending {
		ids = append(ids, id)
	}
	s.all, s.pending = false, map[string]struct{}{}
	slices.Sort(ids)
	return ids, all
}

// hub fans change notices out to the open streams.
type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
	max  int
	st   StreamStats
}

func newHub() *hub { return &hub{subs: map[*subscriber]struct{}{}, max: defaultMax} }

func (h *hub) publish(devices []string) {
	if len(devices) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.add(devices)
	}
}

var errTooManyStreams = errors.New("too many live streams")

func (h *hub) subscribe() (*subscriber, func(), error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) >= h.max {
		h.st.Refused++
		return nil, nil, fmt.Errorf("%w: %w: %d are open, the most this server keeps (close some dashboards; the API still answers)", events.ErrUnavailable, errTooManyStreams, len(h.subs))
	}
	s := &subscriber{pending: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	h.subs[s] = struct{}{}
	return s, func() {
		h.mu.Lock()
		delete(h.subs, s)
		h.mu.Unlock()
	}, nil
}

func (h *hub) dropped(reason string) {
	h.mu.Lock()
	h.st.Dropped++
	h.st.LastDrop, h.st.LastAt = reason, time.Now().UTC()
	h.mu.Unlock()
}

func (h *hub) stats() StreamStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.st
	st.Open, st.Max = len(h.subs), h.max
	return st
}

// changeNotice is the data of a "changed" event.
type changeNotice struct {
	Devices []string `json:"devices,omitempty"`
	All     bool     `json:"all,omitempty"`
}

// sse streams change notices and the status (see the top of this file).
func (a *Server) sse(w http.ResponseWriter, r *http.Request) {
	sub, unsub, err := a.stream.subscribe()
	if err != nil {
		writeError(w, err)
		return
	}
	defer unsub()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	send := func(name string, v any) error {
		b, _ := json.Marshal(v)
		if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	drop := func(err error) {
		if r.Context().Err() != nil {
			return // the client went away: not a drop
		}
		reason := "write failed: " + err.Error()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reason = fmt.Sprintf("client read nothing for %s (too slow); it reconnects and fetches again", writeTimeout)
		}
		a.stream.dropped(reason)
	}
	if err := send("status", a.Status()); err != nil {
		drop(err)
		return
	}
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			err = send("status", a.Status())
		case <-sub.wake:
			ids, all := sub.take()
			if all {
				err = send("changed", changeNotice{All: true})
			} else if len(ids) > 0 {
				err = send("changed", changeNotice{Devices: ids})
			}
		}
		if err != nil {
			drop(err)
			return
		}
	}
}
