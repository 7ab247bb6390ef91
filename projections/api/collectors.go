package api

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// AddCollector serves c's metrics on /metrics too (parts of `fleet server`
// outside the projections, such as the device rate guard). Safe for
// concurrent use, before or after Routes.
func (a *Server) AddCollector(c prometheus.Collector) {
	a.extra.mu.Lock()
	a.extra.cs = append(a.extra.cs, c)
	a.extra.mu.Unlock()
}

// extraCollectors is an unchecked collector (it describes nothing up
// front) over the collectors added with AddCollector.
type extraCollectors struct {
	mu sync.Mutex
	cs []prometheus.Collector
}

func (e *extraCollectors) Describe(chan<- *prometheus.Desc) {}

func (e *extraCollectors) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	cs := append([]prometheus.Collector(nil), e.cs...)
	e.mu.Unlock()
	for _, c := range cs {
		c.Collect(ch)
	}
}
