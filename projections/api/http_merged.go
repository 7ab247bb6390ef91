package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/fleet-dev/fleet/events"
)

// MergedRoutes serves the HTTP API's read routes for a partitioned read
// side: every answer comes from the workers over NATS through cl (a
// Partitioned client), merged as fleet get merges them, with the same
// bodies as one unpartitioned service's routes (Routes). A page lacking a
// partition that did not answer names it (missingPartitions); a device of
// that partition answers 503 naming it.
//
//	GET /api/devices, /api/summary, /api/devices/{id}, /api/devices/{id}/drift,
//	    /api/explain/{id}/{resource}
//	GET /api/status   each partition's status (or why it did not answer)
//	GET /healthz      200 when every partition answers healthy, else 503 naming the others
//
// Not served: /api/stream (live updates), /api/devices/{id}/events, /metrics:
// each worker serves its own (fleet project --partition I/N --http ADDR).
func MergedRoutes(mux *http.ServeMux, cl *Client) {
	answer := func(w http.ResponseWriter, fn func() (any, error)) {
		v, err := fn()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, v)
	}
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, r *http.Request) {
		answer(w, func() (any, error) {
			o, err := listOptionsFromURL(r.URL.Query())
			if err != nil {
				return nil, err
			}
			return cl.DevicesPage(r.Context(), o)
		})
	})
	mux.HandleFunc("GET /api/summary", func(w http.ResponseWriter, r *http.Request) {
		answer(w, func() (any, error) {
			o, err := listOptionsFromURL(r.URL.Query())
			if err != nil {
				return nil, err
			}
			return cl.Summaries(r.Context(), o)
		})
	})
	mux.HandleFunc("GET /api/devices/{id}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, func() (any, error) { return cl.Device(r.Context(), r.PathValue("id")) })
	})
	mux.HandleFunc("GET /api/devices/{id}/drift", func(w http.ResponseWriter, r *http.Request) {
		answer(w, func() (any, error) { return cl.Drift(r.Context(), r.PathValue("id")) })
	})
	mux.HandleFunc("GET /api/explain/{id}/{resource}", func(w http.ResponseWriter, r *http.Request) {
		answer(w, func() (any, error) { return cl.Explain(r.Context(), r.PathValue("id"), r.PathValue("resource")) })
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"partitions": cl.partitionStatus(r.Context())})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		st := cl.partitionHealth(r.Context())
		for _, h := range st {
			if !h.OK {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_ = json.NewEncoder(w).Encode(map[string]any{"partitions": st})
				return
			}
		}
		writeJSON(w, map[string]any{"partitions": st})
	})
}

// partStatus is one partition's answer to status or health.
type partStatus struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	Status *Status       `json:"status,omitempty"`
	Health *HealthReport `json:"health,omitempty"`
}

func (c *Client) each(fn func(p events.Partition) partStatus) map[string]partStatus {
	n := max(c.parts, 1)
	out := make(map[string]partStatus, n)
	for i := range n {
		p := events.Partition{I: i, N: n}
		out[p.String()] = fn(p)
	}
	return out
}

func (c *Client) partitionStatus(ctx context.Context) map[string]partStatus {
	return c.each(func(p events.Partition) partStatus {
		st, err := c.ForPartition(p).Status(ctx)
		if err != nil {
			return partStatus{Error: fmt.Sprintf("partition %s: %v", p, err)}
		}
		return partStatus{OK: true, Status: &st}
	})
}

func (c *Client) partitionHealth(ctx context.Context) map[string]partStatus {
	return c.each(func(p events.Partition) partStatus {
		h, err := c.ForPartition(p).Health(ctx)
		if err != nil {
			return partStatus{Error: fmt.Sprintf("partition %s did not answer: %v", p, err)}
		}
		return partStatus{OK: h.OK, Health: &h}
	})
}
