// Package api serves the projection service's read models through two doors:
// a NATS micro service (what the CLI uses, so every command needs only
// --nats) and an HTTP JSON API with Prometheus metrics and server-sent
// events of read-model changes.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// The micro service: its name and the subject its endpoints live under
// (outside fleet.>, which the stream captures).
const (
	ServiceName = "fleet-projections"
	Version     = "0.2.0" // 0.2: devices pages, summaries
	Prefix      = "fleetapi.projections"
)

// Endpoint names; the subject is Prefix + "." + name.
const (
	EpDevices   = "devices"   // a DevicePage (Request.After, Limit, Query, Status)
	EpSummaries = "summaries" // a SummaryPage: the overview's rows and the fleet's totals
	EpDevice    = "device"
	EpDrift     = "drift"
	EpExplain   = "explain"
	EpStatus    = "status"
	EpRebuild   = "rebuild" // starts a rebuild in the background; follow it with status
	EpHealth    = "health"  // a HealthReport: /healthz's checks, for 'fleet doctor'
)

// Request is the body of every endpoint's request (unused fields empty).
type Request struct {
	Device   string `json:"device,omitempty"`
	Resource string `json:"resource,omitempty"`
	// Lists (devices, summaries): see ListOptions.
	After    string `json:"after,omitempty"`
	Limit    int    `json:"limit,omitempty"`
	Query    string `json:"q,omitempty"`
	Status   string `json:"status,omitempty"`
	Selector string `json:"selector,omitempty"`
}

func (r Request) list() ListOptions {
	return ListOptions{After: r.After, Limit: r.Limit, Query: r.Query, Status: r.Status, Selector: r.Selector}
}

// Status is the service's state: counters, lag and heartbeat TTL.
type Status struct {
	projections.Stats
	HeartbeatTTL string      `json:"heartbeatTTL"`
	Streams      StreamStats `json:"streams"` // the live streams (/api/stream) open and dropped
}

// Server answers from a projection service. Safe for concurrent use.
type Server struct {
	svc     *projections.Service
	log     Log
	extra   extraCollectors // AddCollector's, served on /metrics
	rebuild func(ctx context.Context) error
	ttl     time.Duration
	now     func() time.Time

	mu      sync.RWMutex
	beats   map[string]time.Time // device -> last heartbeat
	expired map[string]bool      // devices whose heartbeat expired (Stale), as last told to the streams
	hasKV   bool
	stream  *hub
	ctx     context.Context

	sumMu  sync.Mutex
	sums   map[string]DeviceSummary // cached summaries without Stale; a batch drops its devices'
	sumGen uint64                   // bumped by every drop

	maxReply int          // bytes a micro reply may carry; 0: the connection's max payload less headers
	holds    Holds        // WithHolds: the rollouts holding a device (nil: none asked)
	checks   healthChecks // health.go
}

// Log is what the API needs of the log: a device's history and the agents'
// heartbeats (*jsstore.Store has both).
type Log interface {
	Read(ctx context.Context, f events.Filter) iter.Seq2[events.Stored, error]
	events.Heartbeats
}

// ServerOption configures a Server.
type ServerOption func(*Server)

// WithRebuild lets the API start a rebuild of the read models (the micro
// service's rebuild endpoint) by calling rebuild in the background.
// Without it, a rebuild request is refused.
func WithRebuild(rebuild func(ctx context.Context) error) ServerOption {
	return func(a *Server) { a.rebuild = rebuild }
}

// WithHolds makes GET /api/devices/{id} carry the rollouts that hold the
// device (DeviceView), asked of holds at query time (device_holds.go says why).
func WithHolds(holds Holds) ServerOption { return func(a *Server) { a.holds = holds } }

// WithMaxReply bounds the bytes of a micro service reply (tests use small
// ones); by default it is the NATS connection's max payload less 4 KiB.
func WithMaxReply(n int) ServerOption { return func(a *Server) { a.maxReply = n } }

// WithMaxStreams bounds the live streams open at once (default 1,000);
// more are refused with 503 and the reason.
func WithMaxStreams(n int) ServerOption { return func(a *Server) { a.stream.max = n } }

// NewServer serves svc. log is used to read device histories and watch the
// heartbeat bucket (events.HeartbeatBucket); ttl is how long a heartbeat counts.
func NewServer(svc *projections.Service, log Log, ttl time.Duration, opts ...ServerOption) *Server {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	a := &Server{svc: svc, log: log, ttl: ttl, now: time.Now, beats: map[string]time.Time{}, expired: map[string]bool{},
		stream: newHub(), sums: map[string]DeviceSummary{}}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Start watches heartbeats and feeds live updates until ctx is done. A
// missing heartbeat bucket leaves every device's Stale condition Unknown.
func (a *Server) Start(ctx context.Context) error {
	a.ctx = ctx
	remove := a.svc.OnBatch(func(b projections.BatchInfo) { a.invalidate(b.Devices); a.stream.publish(b.Devices) })
	go func() { <-ctx.Done(); remove() }()
	beats, err := a.log.WatchHeartbeats(ctx)
	if errors.Is(err, events.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.hasKV = true
	a.mu.Unlock()
	go func() {
		for b := range beats {
			// A heartbeat changes what a client sees only when it makes
			// the device fresh again (or goes): no notice per heartbeat.
			a.mu.Lock()
			prev, had := a.beats[b.Device]
			flip := !had || a.expired[b.Device] || b.At.Sub(prev) > a.ttl
			if b.Gone {
				delete(a.beats, b.Device)
				flip = true
			} else {
				a.beats[b.Device] = b.At
			}
			delete(a.expired, b.Device)
			a.mu.Unlock()
			if flip {
				a.stream.publish([]string{b.Device})
			}
		}
	}()
	go a.sweepStale(ctx)
	return nil
}

// sweepStale tells the streams about devices whose heartbeat expired: no
// event marks that moment, so it is looked for every quarter TTL.
func (a *Server) sweepStale(ctx context.Context) {
	tick := time.NewTicker(max(time.Second, a.ttl/4))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := a.now()
		var ids []string
		a.mu.Lock()
		for id, beat := range a.beats {
			if now.Sub(beat) > a.ttl && !a.expired[id] {
				a.expired[id] = true
				ids = append(ids, id)
			}
		}
		a.mu.Unlock()
		a.stream.publish(ids)
	}
}

// withStale adds the Stale condition from the heartbeats.
func (a *Server) withStale(d projections.Device) projections.Device {
	a.mu.RLock()
	beat, has := a.beats[d.Device], a.hasKV
	a.mu.RUnlock()
	if !has {
		out := d
		out.Conditions = append(append([]projections.Condition{}, d.Conditions...),
			projections.Condition{Type: projections.CondStale, Status: projections.Unknown, Reason: "NoHeartbeatBucket"})
		return out
	}
	return d.WithStale(beat, a.now(), a.ttl)
}

// Devices returns every device with its Stale condition. It copies the
// whole fleet: servers answer with pages (DevicesPage, Summaries).
func (a *Server) Devices() []projections.Device {
	ds := a.svc.Devices()
	for i := range ds {
		ds[i] = a.withStale(ds[i])
	}
	return ds
}

// Device returns one device with its Stale condition.
func (a *Server) Device(id string) (projections.Device, bool) {
	d, ok := a.svc.Device(id)
	if !ok {
		return d, false
	}
	return a.withStale(d), true
}

// Status returns the service's counters.
func (a *Server) Status() Status {
	return Status{Stats: a.svc.Stats(), HeartbeatTTL: a.ttl.String(), Streams: a.stream.stats()}
}

// AddMicro registers the micro service on nc. Several instances may run:
// requests go to one of them (queue group).
func (a *Server) AddMicro(nc *nats.Conn) (micro.Service, error) {
	prefix, meta := a.partitionPrefix() // client_partition.go
	srv, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: Version, Metadata: meta,
		Description: "fleet read models: fleet state, drift history, explain"})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", ServiceName, err)
	}
	g := srv.AddGroup(prefix)
	budget := a.maxReply
	if budget <= 0 {
		budget = int(nc.MaxPayload()) - 4096
	}
	add := func(name string, fn func(Request) (any, error)) error {
		return g.AddEndpoint(name, micro.HandlerFunc(func(r micro.Request) {
			var req Request
			if len(r.Data()) > 0 {
				if err := json.Unmarshal(r.Data(), &req); err != nil {
					_ = r.Error("400", "request: must be JSON {\"device\",\"resource\"}: "+err.Error(), nil)
					return
				}
			}
			v, err := fn(req)
			var b []byte
			if err == nil {
				if b, err = json.Marshal(v); err == nil && len(b) > budget {
					err = fmt.Errorf("the %s reply is %d bytes, more than one NATS reply can carry (%d bytes): %w; %s",
						name, len(b), budget, ErrTooLarge, tooLargeHint(name))
				}
			}
			switch {
			case errors.Is(err, events.ErrInvalid):
				_ = r.Error("400", err.Error(), nil)
			case errors.Is(err, events.ErrNotFound):
				_ = r.Error("404", err.Error(), nil)
			case errors.Is(err, ErrTooLarge):
				_ = r.Error("413", err.Error(), nil)
			case err != nil:
				_ = r.Error("500", err.Error(), nil)
			default:
				_ = r.Respond(b)
			}
		}))
	}
	for name, fn := range map[string]func(Request) (any, error){
		EpDevices:   func(r Request) (any, error) { return a.DevicesPage(r.list(), budget-1024) },
		EpSummaries: func(r Request) (any, error) { return a.Summaries(r.list()) },
		EpDevice:    a.device,
		EpDrift:     a.drift,
		EpExplain:   a.explain,
		EpStatus:    func(Request) (any, error) { return a.Status(), nil },
		EpRebuild:   a.startRebuild,
		EpHealth:    func(Request) (any, error) { return a.HealthReport(), nil },
	} {
		if err := add(name, fn); err != nil {
			srv.Stop()
			return nil, err
		}
	}
	return srv, nil
}

// tooLargeHint says what to do when an endpoint's reply is too large.
func tooLargeHint(ep string) string {
	switch ep {
	case EpDrift:
		return "ask for one device's drift (fleet drift DEVICE), or read it over HTTP (GET /api/devices/DEVICE/drift)"
	case EpSummaries:
		return "ask for fewer devices a page (limit)"
	}
	return "read it over HTTP (the server's --http address, /api/...) or raise the NATS server's max_payload"
}

func (a *Server) device(r Request) (any, error) {
	if err := events.CheckID("device", r.Device); err != nil {
		return nil, err
	}
	d, ok := a.Device(r.Device)
	if !ok {
		return nil, fmt.Errorf("device %s: %w", r.Device, events.ErrNotFound)
	}
	return d, nil
}

func (a *Server) drift(r Request) (any, error) {
	if r.Device == "" {
		return a.svc.Drift(""), nil
	}
	if err := events.CheckID("device", r.Device); err != nil {
		return nil, err
	}
	if _, ok := a.svc.Device(r.Device); !ok {
		return nil, fmt.Errorf("device %s: %w", r.Device, events.ErrNotFound)
	}
	return a.svc.Drift(r.Device), nil
}

func (a *Server) explain(r Request) (any, error) {
	if err := events.CheckID("device", r.Device); err != nil {
		return nil, err
	}
	if err := events.CheckID("resource", r.Resource); err != nil {
		return nil, err
	}
	x, ok := a.svc.Explain(r.Device, r.Resource)
	if !ok {
		return nil, fmt.Errorf("resource %s of device %s: %w", r.Resource, r.Device, events.ErrNotFound)
	}
	return x, nil
}

func (a *Server) startRebuild(Request) (any, error) {
	if a.rebuild == nil {
		return nil, fmt.Errorf("%w: this server was started without rebuilds", events.ErrInvalid)
	}
	if a.Status().Rebuilding {
		return nil, fmt.Errorf("%w: a rebuild is already running", events.ErrInvalid)
	}
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() { _ = a.rebuild(ctx) }()
	for range 100 { // answer once it has started, so that status shows it
		if a.svc.Stats().Rebuilding {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a.Status(), nil
}
