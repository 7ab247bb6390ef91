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
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	svc *projections.Service
	js  jetstream.JetStream
	ttl time.Duration
	now func() time.Time

	mu     sync.RWMutex
	beats  map[string]time.Time // device -> last heartbeat
	hasKV  bool
	stream *hub
	ctx    context.Context
	checks healthChecks // health.go
}

// NewServer serves svc. js is used to read device histories and watch the
// heartbeat bucket (events.HeartbeatBucket); ttl is how long a heartbeat counts.
func NewServer(svc *projections.Service, js jetstream.JetStream, ttl time.Duration) *Server {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Server{svc: svc, js: js, ttl: ttl, now: time.Now, beats: map[string]time.Time{}, stream: newHub()}
}

// Start watches heartbeats and feeds live updates until ctx is done. A
// missing heartbeat bucket leaves every device's Stale condition Unknown.
func (a *Server) Start(ctx context.Context) error {
	a.ctx = ctx
	remove := a.svc.OnBatch(func(b projections.BatchInfo) { a.stream.publish(b.Devices) })
	go func() { <-ctx.Done(); remove() }()
	kv, err := a.js.KeyValue(ctx, events.HeartbeatBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("heartbeat bucket: %w", err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch heartbeats: %w", err)
	}
	a.mu.Lock()
	a.hasKV = true
	a.mu.Unlock()
	go func() {
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				a.mu.Lock()
				if e.Operation() == jetstream.KeyValuePut {
					a.beats[e.Key()] = e.Created()
				} else {
					delete(a.beats, e.Key())
				}
				a.mu.Unlock()
				a.stream.publish([]string{e.Key()})
			}
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
		EpRebuild: a.rebuild,
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

func (a *Server) rebuild(Request) (any, error) {
	if a.Status().Rebuilding {
		return nil, fmt.Errorf("%w: a rebuild is already running", events.ErrInvalid)
	}
	ctx := a.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	go func() { _ = a.svc.Rebuild(ctx, a.js, nil) }()
	for range 100 { // answer once it has started, so that status shows it
		if a.svc.Stats().Rebuilding {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return a.Status(), nil
}
