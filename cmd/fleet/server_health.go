package main

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleet-dev/fleet/projections/api"
)

// serverHealth gathers the checks the parts of `fleet server` add for
// /healthz (JetStream, the time-travel index) until the projections' API,
// which serves /healthz, takes them. Parts may add before or after it attaches.
type serverHealth struct {
	mu     sync.Mutex
	api    *api.Server
	checks []func() api.Check
	// collectors wait for the API too (server_rateguard.go)
	collectors []prometheus.Collector
}

// add makes /healthz run fn.
func (h *serverHealth) add(fn func() api.Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.api != nil {
		h.api.AddCheck(fn)
		return
	}
	h.checks = append(h.checks, fn)
}

// attach hands every check, now and later, to a.
func (h *serverHealth) attach(a *api.Server) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.api = a
	for _, fn := range h.checks {
		a.AddCheck(fn)
	}
	h.checks = nil
	for _, c := range h.collectors {
		a.AddCollector(c)
	}
	h.collectors = nil
}
