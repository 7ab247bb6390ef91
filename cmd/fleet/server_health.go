package main

import (
	"sync"

	"github.com/fleet-dev/fleet/projections/api"
)

// serverHealth gathers the checks the parts of `fleet server` add for
// /healthz (JetStream, the time-travel index) until the projections' API,
// which serves /healthz, takes them. Parts may add before or after it attaches.
type serverHealth struct {
	mu     sync.Mutex
	api    *api.Server
	checks []func() api.Check
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
}
