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
	Version     = "0.1.0"
	Prefix      = "fleetapi.projections"
)

// Endpoint names; the subject is Prefix + "." + name.
const (
	EpDevices = "devices"
	EpDevice  = "device"
	EpDrift   = "drift"
	EpExplain = "explain"
	EpStatus  = "status"
	EpRebuild = "rebuild" // starts a rebuild in the background; follow it with status
)

// Request is the body of every endpoint's request (unused fields empty).
type Request struct {
	Device   string `json:"device,omitempty"`
	Resource string `json:"resource,omitempty"`
}

// Status is the service's state: counters, lag and heartbeat TTL.
type Status struct {
	projections.Stats
	HeartbeatTTL string `json:"heartbeatTTL"`
}

// Server answers from a projection service. Safe for concurrent use.
type Server struct {
	svc     *projections.Service
	log     Log
	rebuild func(ctx context.Context) error
	ttl     time.Duration
	now     func() time.Time

	mu     sync.RWMutex
	beats  map[string]time.Time // device -> last heartbeat
	hasKV  bool
	stream *hub
	ctx    context.Context
}

// Log is what the API needs of the log: a device's history and the agents'
// heartbeats (*jsstore.Store has both).
type Log interface {
	Read(ctx context.Context, f events.Filter) iter.Seq2[events.Stored, error]
	events.Heartbeats
}

// Option configures a Server.
type Option func(*Server)

// WithRebuild lets the API start a rebuild of the read models (the micro
// service's rebuild endpoint) by calling rebuild in the background.
// Without it, a rebuild request is refused.
func WithRebuild(rebuild func(ctx context.Context) error) Option {
	return func(a *Server) { a.rebuild = rebuild }
}

// NewServer serves svc. log is used to read device histories and watch the
// heartbeat bucket (events.HeartbeatBucket); ttl is how long a heartbeat counts.
func NewServer(svc *projections.Service, log Log, ttl time.Duration, opts ...Option) *Server {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	a := &Server{svc: svc, log: log, ttl: ttl, now: time.Now, beats: map[string]time.Time{}, stream: newHub()}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Start watches heartbeats and feeds live updates until ctx is done. A
// missing heartbeat bucket leaves every device's Stale condition Unknown.
func (a *Server) Start(ctx context.Context) error {
	a.ctx = ctx
	remove := a.svc.OnBatch(func(b projections.BatchInfo) { a.stream.publish(b.Devices) })
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
			a.mu.Lock()
			if b.Gone {
				delete(a.beats, b.Device)
			} else {
				a.beats[b.Device] = b.At
			}
			a.mu.Unlock()
			a.stream.publish([]string{b.Device})
		}
	}()
	return nil
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

// Devices returns every device with its Stale condition.
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
	return Status{Stats: a.svc.Stats(), HeartbeatTTL: a.ttl.String()}
}

// AddMicro registers the micro service on nc. Several instances may run:
// requests go to one of them (queue group).
func (a *Server) AddMicro(nc *nats.Conn) (micro.Service, error) {
	srv, err := micro.AddService(nc, micro.Config{Name: ServiceName, Version: Version,
		Description: "fleet read models: fleet state, drift history, explain"})
	if err != nil {
		return nil, fmt.Errorf("micro service %s: %w", ServiceName, err)
	}
	g := srv.AddGroup(Prefix)
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
			switch {
			case errors.Is(err, events.ErrInvalid):
				_ = r.Error("400", err.Error(), nil)
			case errors.Is(err, events.ErrNotFound):
				_ = r.Error("404", err.Error(), nil)
			case err != nil:
				_ = r.Error("500", err.Error(), nil)
			default:
				_ = r.RespondJSON(v)
			}
		}))
	}
	for name, fn := range map[string]func(Request) (any, error){
		EpDevices: func(Request) (any, error) { return a.Devices(), nil },
		EpDevice:  a.device,
		EpDrift:   a.drift,
		EpExplain: a.explain,
		EpStatus:  func(Request) (any, error) { return a.Status(), nil },
		EpRebuild: a.startRebuild,
	} {
		if err := add(name, fn); err != nil {
			srv.Stop()
			return nil, err
		}
	}
	return srv, nil
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
