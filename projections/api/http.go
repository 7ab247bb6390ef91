package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Routes registers the HTTP API on mux:
//
//	GET /api/devices               every device (the device JSON shape)
//	GET /api/devices/{id}          one device
//	GET /api/devices/{id}/drift    its drift history
//	GET /api/devices/{id}/events   its events from the log (?from=SEQ&limit=N, default 1000)
//	GET /api/explain/{id}/{resource}  why a resource is not Ready
//	GET /api/status                counters and lag
//	GET /api/stream                server-sent events: "device" (device JSON) on every change, "status" now and then
//	GET /healthz                   200 when the service is caught up within 10,000 events
//	GET /metrics                   Prometheus: events applied, lag, fold time
func (a *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Devices()) })
	mux.HandleFunc("GET /api/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) { return a.device(Request{Device: r.PathValue("id")}) })
	})
	mux.HandleFunc("GET /api/devices/{id}/drift", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) { return a.drift(Request{Device: r.PathValue("id")}) })
	})
	mux.HandleFunc("GET /api/explain/{id}/{resource}", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) {
			return a.explain(Request{Device: r.PathValue("id"), Resource: r.PathValue("resource")})
		})
	})
	mux.HandleFunc("GET /api/devices/{id}/events", a.deviceEvents)
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.Status()) })
	mux.HandleFunc("GET /api/stream", a.sse)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		st := a.svc.Stats()
		if st.Lag > 10000 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		writeJSON(w, map[string]any{"ok": st.Lag <= 10000, "checkpoint": st.Checkpoint, "lag": st.Lag})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics(), promhttp.HandlerOpts{}))
}

func (a *Server) metrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	stat := func(f func(projections.Stats) float64) func() float64 {
		return func() float64 { return f(a.svc.Stats()) }
	}
	fold := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleet_projection_batch_fold_seconds",
		Help: "Time to fold one batch of events and write it with the checkpoint.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	a.svc.OnBatch(func(b projections.BatchInfo) {
		if b.Fold > 0 {
			fold.Observe(b.Fold.Seconds())
		}
	})
	reg.MustRegister(fold,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_events_applied_total", Help: "Events folded into the read models since start."},
			stat(func(s projections.Stats) float64 { return float64(s.Applied) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_messages_skipped_total", Help: "Messages on the log that are not valid events."},
			stat(func(s projections.Stats) float64 { return float64(s.Skipped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_fold_seconds_total", Help: "Time spent folding and writing batches."},
			stat(func(s projections.Stats) float64 { return s.FoldSecs })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleet_projection_lag", Help: "Stream last sequence minus the checkpoint."},
			stat(func(s projections.Stats) float64 { return float64(s.Lag) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleet_projection_checkpoint", Help: "Last stream sequence applied."},
			stat(func(s projections.Stats) float64 { return float64(s.Checkpoint) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleet_projection_devices", Help: "Devices in the fleet state."},
			stat(func(s projections.Stats) float64 { return float64(s.Devices) })),
	)
	return reg
}

func (a *Server) answer(w http.ResponseWriter, fn func() (any, error)) {
	v, err := fn()
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, events.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, events.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, events.ErrUnavailable):
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (a *Server) deviceEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := events.CheckID("device", id); err != nil {
		writeError(w, err)
		return
	}
	var from uint64
	limit := 1000
	if s := r.URL.Query().Get("from"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: from %q: must be a stream sequence", events.ErrInvalid, s))
			return
		}
		from = n
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100000 {
			writeError(w, fmt.Errorf("%w: limit %q: must be 1 to 100000", events.ErrInvalid, s))
			return
		}
		limit = n
	}
	out := []events.Stored{}
	for ev, err := range a.log.Read(r.Context(), events.Filter{Device: id, FromSeq: from}) {
		if err != nil {
			var bm *events.BadMessage
			if errors.As(err, &bm) {
				continue
			}
			writeError(w, err)
			return
		}
		out = append(out, ev)
		if len(out) >= limit {
			break
		}
	}
	writeJSON(w, out)
}

// hub fans read-model changes out to stream subscribers.
type hub struct {
	mu   sync.Mutex
	subs map[chan []string]struct{}
}

func newHub() *hub { return &hub{subs: map[chan []string]struct{}{}} }

func (h *hub) publish(devices []string) {
	if len(devices) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- devices:
		default: // a slow subscriber misses this change; its next one resends the device
		}
	}
}

func (h *hub) subscribe() (chan []string, func()) {
	ch := make(chan []string, 256)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// sse streams "device" events (one device's JSON) for every device when a
// client connects and whenever one changes, and a "status" event every 2s.
func (a *Server) sse(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch, unsub := a.stream.subscribe()
	defer unsub()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Connection", "keep-alive")
	send := func(name string, v any) bool {
		b, _ := json.Marshal(v)
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
		return err == nil
	}
	for _, d := range a.Devices() {
		if !send("device", d) {
			return
		}
	}
	send("status", a.Status())
	fl.Flush()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if !send("status", a.Status()) {
				return
			}
		case ids := <-ch:
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				if d, ok := a.Device(id); ok && !send("device", d) {
					return
				}
			}
		}
		fl.Flush()
	}
}
