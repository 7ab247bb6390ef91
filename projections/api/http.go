package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Routes registers the HTTP API on mux:
//
//	GET /api/devices               a page of devices (the device JSON shape): {devices, next, total};
//	                               ?selector= keeps devices whose labels match (projections.ParseSelector)
//	                               ?after=CURSOR&limit=N (default 100, at most 1000)&q=TEXT&status=ready|notready|progressing|degraded|stale
//	GET /api/summary               a page of device summaries (conditions and counts, no resources) and the
//	                               fleet's totals: {devices, next, total, fleet}; the same parameters
//	GET /api/devices/{id}          one device; with WithHolds, and a rollout holding it, its "rollouts" (DeviceView)
//	GET /api/devices/{id}/drift    its drift history
//	GET /api/devices/{id}/events   its events from the log (?from=SEQ&limit=N, default 1000)
//	GET /api/explain/{id}/{resource}  why a resource is not Ready
//	GET /api/status                counters and lag
//	GET /api/stream                server-sent events: "changed" {devices: [ids]} (or {all: true}), "status" now and then (stream.go)
//	GET /healthz                   200 when every check passes (the log did not go backwards, caught up within 10,000 events, JetStream enabled); 503 with the reason and what to do
//	GET /metrics                   Prometheus: events applied, lag, fold time
func (a *Server) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) {
			o, err := listOptionsFromURL(r.URL.Query())
			if err != nil {
				return nil, err
			}
			return a.DevicesPage(o, httpPageBytes)
		})
	})
	mux.HandleFunc("GET /api/summary", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) {
			o, err := listOptionsFromURL(r.URL.Query())
			if err != nil {
				return nil, err
			}
			return a.Summaries(o)
		})
	})
	mux.HandleFunc("GET /api/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.answer(w, func() (any, error) { return a.deviceView(r.Context(), r.PathValue("id")) })
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
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics(), promhttp.HandlerOpts{}))
}

// httpPageBytes bounds a page of whole devices over HTTP (which has no
// payload limit of its own), so that a page of large devices stays a page.
const httpPageBytes = 16 << 20

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
	reg.MustRegister(fold, &a.extra,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_events_applied_total", Help: "Events folded into the read models since start."},
			stat(func(s projections.Stats) float64 { return float64(s.Applied) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_messages_skipped_total", Help: "Messages on the log that are not valid events."},
			stat(func(s projections.Stats) float64 { return float64(s.Skipped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_events_forged_total", Help: "Events whose actor may not have written them (events.CheckWriter): reported, not folded; counted in skipped too."},
			stat(func(s projections.Stats) float64 { return float64(s.Forged) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_fold_seconds_total", Help: "Time spent folding and writing batches."},
			stat(func(s projections.Stats) float64 { return s.FoldSecs })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleet_projection_lag", Help: "Stream last sequence minus the checkpoint."},
			stat(func(s projections.Stats) float64 { return float64(s.Lag) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "fleet_projection_checkpoint", Help: "Last stream sequence applied."},
			stat(func(s projections.Stats) float64 { return float64(s.Checkpoint) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "fleet_projection_consumer_failures_total", Help: "Times the service's consumer failed and was started again from the checkpoint (each logged with its cause)."},
			stat(func(s projections.Stats) float64 { return float64(s.Failures) })),
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
	case errors.Is(err, ErrTooLarge):
		code = http.StatusRequestEntityTooLarge
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
