package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/projections/api"
)

// RateGuardFlags are `fleet server`'s per-device rate limit flags.
type RateGuardFlags struct {
	DeviceRate       string        `name:"device-rate" default:"50/s" placeholder:"N/UNIT" help:"With --auth: events a device may store on average (N/s, N/m or N/h; 0 turns the guard off). A device past --device-burst plus this rate has its credentials suspended."`
	DeviceBurst      int           `name:"device-burst" default:"5000" placeholder:"N" help:"With --auth: events a device may store at once above --device-rate (an honest 1,000-file rollout writes about 3,000)."`
	DeviceSuspend    time.Duration `name:"device-suspend" default:"5m" placeholder:"DURATION" help:"With --auth: how long a device over its rate is suspended; doubled on each repeat offence up to --device-suspend-max."`
	DeviceSuspendMax time.Duration `name:"device-suspend-max" default:"1h" placeholder:"DURATION" help:"With --auth: the longest suspension."`
}

// rateGuardHelp is added to `fleet server --help`.
const rateGuardHelp = `

Per-device rate limit (only with --auth, where each device has credentials of
its own): the server follows the log and counts each device's events in a
token bucket (--device-rate, --device-burst). A device past it has its
credentials suspended for --device-suspend (doubling on repeat offences, up
to --device-suspend-max): the server closes its connections and refuses it,
its agent keeps its events and backs off, and when the suspension ends the
same credentials work again and the agent sends what it kept. Suspensions
are logged, counted in /metrics (fleet_device_suspensions_total), shown in
/healthz ("device rate") and 'fleet device list'; 'fleet device reinstate ID'
lifts one by hand.
  fleet server --auth --device-rate 50/s --device-burst 5000 --device-suspend 5m`

// parse reads the flags; a zero (or empty) rate means off.
func (f RateGuardFlags) parse() (perSec float64, err error) {
	if f.DeviceRate == "" {
		return 0, nil
	}
	n, unit, ok := strings.Cut(f.DeviceRate, "/")
	if !ok {
		unit = "s"
	}
	v, perr := strconv.ParseFloat(n, 64)
	div := map[string]float64{"s": 1, "m": 60, "h": 3600}[unit]
	if perr != nil || v < 0 || div == 0 {
		return 0, usagef("--device-rate %q: must be events per second, minute or hour, such as 50/s or 1000/m (0: off)", f.DeviceRate)
	}
	if v > 0 && f.DeviceBurst < 1 {
		return 0, usagef("--device-burst %d: must be at least 1 (an honest 1,000-file rollout writes about 3,000 events at once)", f.DeviceBurst)
	}
	if v > 0 && (f.DeviceSuspend < time.Second || f.DeviceSuspendMax < f.DeviceSuspend) {
		return 0, usagef("--device-suspend %s, --device-suspend-max %s: the suspension must be at least 1s and at most the maximum", f.DeviceSuspend, f.DeviceSuspendMax)
	}
	return v / div, nil
}

func init() {
	addServerPart("device rate guard", func(ctx context.Context, env *ServerEnv) (func(), error) {
		if env.AuthDir == "" || env.Embedded == nil {
			return nil, nil // without --auth devices share credentials: nothing to suspend
		}
		perSec, err := env.RateGuard.parse()
		if err != nil || perSec == 0 {
			return nil, err
		}
		g, err := newRateGuard(env, perSec)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); g.run(ctx) }()
		return func() { cancel(); <-done; g.sys.Close() }, nil
	})
}

// rateGuard follows the log, keeps a token bucket per device, and suspends
// a device's credentials when its bucket runs dry; it lifts suspensions
// when they end.
type rateGuard struct {
	a       *auth.Authority
	sys     *nats.Conn // the system account, to push account JWTs
	store   events.Store
	flags   RateGuardFlags
	perSec  float64
	log     *slog.Logger
	counter prometheus.Counter

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newRateGuard(env *ServerEnv, perSec float64) (*rateGuard, error) {
	a, err := auth.Open(env.AuthDir)
	if err != nil {
		return nil, err
	}
	sys, err := nats.Connect("", nats.InProcessServer(env.Embedded.Server), nats.UserCredentials(a.SystemCredsPath()), nats.Name("fleet-rate-guard"))
	if err != nil {
		return nil, fmt.Errorf("rate guard: system account connection: %w", err)
	}
	g := &rateGuard{a: a, sys: sys, store: env.Store, flags: env.RateGuard, perSec: perSec,
		log:     slog.New(slog.NewTextHandler(os.Stderr, nil)).With("part", "device rate guard"),
		counter: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleet_device_suspensions_total", Help: "Devices suspended by the rate guard for storing events faster than --device-rate/--device-burst."}),
		buckets: map[string]*rate.Limiter{}}
	if env.Health != nil {
		env.Health.add(g.health)
		env.Health.addCollector(g.counter)
	}
	return g, nil
}

// run follows the log from its end (what is stored already was let in) and
// checks the suspensions every second, until ctx is done.
func (g *rateGuard) run(ctx context.Context) {
	lifted := make(chan struct{})
	go func() { defer close(lifted); g.lifter(ctx) }()
	defer func() { <-lifted }()
	from := uint64(0)
	for ctx.Err() == nil {
		if from == 0 {
			last, err := g.store.LastSeq(ctx)
			if err != nil {
				g.sleep(ctx, time.Second)
				continue
			}
			from = last + 1
		}
		for s, err := range g.store.Follow(ctx, events.Filter{FromSeq: from}) {
			if err != nil {
				var bad *events.BadMessage
				if errors.As(err, &bad) {
					from = bad.Seq + 1
					continue
				}
				g.log.Warn("following the log failed; following again", "err", err)
				break
			}
			from = s.Seq + 1
			if s.Device != "" && strings.HasPrefix(s.Actor, "agent:") {
				g.count(ctx, s.Device, s.StreamTime)
			}
		}
		g.sleep(ctx, time.Second)
	}
}

func (g *rateGuard) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// count takes a token from the device's bucket at the event's stream time;
// an empty bucket suspends the device.
func (g *rateGuard) count(ctx context.Context, device string, at time.Time) {
	g.mu.Lock()
	b := g.buckets[device]
	if b == nil {
		b = rate.NewLimiter(rate.Limit(g.perSec), g.flags.DeviceBurst)
		g.buckets[device] = b
	}
	ok := b.AllowN(at, 1)
	g.mu.Unlock()
	if !ok {
		g.suspend(ctx, device)
	}
}

// suspend suspends the device, unless it is suspended (or revoked) already.
func (g *rateGuard) suspend(ctx context.Context, device string) {
	d, err := g.a.LookupDevice(device)
	if err != nil || d.Revoked() || d.Suspended(time.Now()) {
		return // events of a device without credentials are the operator's; a suspended one's are in flight
	}
	dur := g.flags.DeviceSuspend
	for i := 0; i < d.Suspensions && dur < g.flags.DeviceSuspendMax; i++ {
		dur *= 2
	}
	dur = min(dur, g.flags.DeviceSuspendMax)
	until := time.Now().Add(dur)
	reason := fmt.Sprintf("more than %d events at once and %s on average (--device-burst, --device-rate)", g.flags.DeviceBurst, g.flags.DeviceRate)
	tok, d, err := g.a.SuspendDevice(device, until, reason)
	if err == nil {
		err = g.push(ctx, tok)
	}
	if err != nil {
		g.log.Error("suspending a device over its rate failed", "device", device, "err", err,
			"action", "suspend it by hand: fleet device revoke "+device)
		return
	}
	g.counter.Inc()
	g.mu.Lock()
	delete(g.buckets, device) // a fresh burst after the suspension
	g.mu.Unlock()
	g.log.Warn("device suspended: it stored events faster than its rate allows", "device", device,
		"rate", reason, "until", until.UTC().Format(time.RFC3339), "suspension", d.Suspensions,
		"action", "look at the device's events (fleet replay --device "+device+"); lift it early with 'fleet device reinstate "+device+"', or revoke it with 'fleet device revoke "+device+"'")
}

func (g *rateGuard) push(ctx context.Context, tok string) error {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return auth.Push(pctx, g.sys, tok)
}

// lifter reinstates suspended devices whose suspension ended, every second,
// including those suspended before this server started.
func (g *rateGuard) lifter(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		devs, err := g.a.Devices()
		if err == nil {
			for _, d := range devs {
				if d.SuspendedUntil == nil || d.Revoked() || d.Suspended(time.Now()) {
					continue
				}
				tok, _, err := g.a.ReinstateDevice(d.ID)
				if err == nil {
					err = g.push(ctx, tok)
				}
				if err != nil {
					g.log.Error("lifting a suspension failed; retrying", "device", d.ID, "err", err)
					continue
				}
				g.log.Info("device reinstated: its suspension ended", "device", d.ID)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// health is the guard's /healthz check: OK (a suspended device is the
// guard working, not the server failing), with the suspended devices and
// until when, as the auth directory says.
func (g *rateGuard) health() api.Check {
	sus := map[string]time.Time{}
	devs, err := g.a.Devices()
	for _, d := range devs {
		if d.Suspended(time.Now()) {
			sus[d.ID] = *d.SuspendedUntil
		}
	}
	c := api.Check{Name: "device rate", OK: true, Detail: map[string]any{
		"rate": g.flags.DeviceRate, "burst": g.flags.DeviceBurst, "suspended": sus}}
	if err != nil {
		c.Reason = err.Error()
	}
	return c
}

// addCollector serves c on /metrics once the projections' API is attached.
func (h *serverHealth) addCollector(c prometheus.Collector) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.api != nil {
		h.api.AddCollector(c)
		return
	}
	h.collectors = append(h.collectors, c)
}
