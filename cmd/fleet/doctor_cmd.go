package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

func init() {
	register("doctor", "Check the control plane and the fleet: what is wrong and what to do.", "Control plane", &DoctorCmd{})
}

// DoctorCmd is `fleet doctor`.
type DoctorCmd struct {
	HTTP    string        `name:"http" placeholder:"URL" help:"Read the server's health from its HTTP /healthz at this address (http://host:8080) instead of over NATS."`
	Timeout time.Duration `default:"5s" help:"How long to wait for each answer."`
	Output
}

// Help is the command's long help.
func (c *DoctorCmd) Help() string {
	return `Checks, in order: the server answers on NATS; the FLEET stream and how full
it is against its limits (bytes, messages, age); the projection service (lag,
last error), the time-travel index, JetStream and the data directory's disk
space (from the server's health checks); whether auth is on; devices whose
heartbeat is stale, whose clock is skewed, or that keep parked events the log
refused. Each problem comes with what to do. Exit 0 when nothing is wrong,
1 when something is. Devices that are Degraded or CrashLooping (their own
resources) are a warning, listed with what to run next; they do not make the
exit non-zero.

Examples:
  fleet doctor
  fleet doctor -o json
  fleet doctor --nats nats://hub:4222 --creds /var/lib/fleet/auth/operator.creds
  fleet doctor --http http://127.0.0.1:8080      # health over HTTP (/healthz)`
}

// Finding is one line of the doctor's report.
type Finding struct {
	Check  string `json:"check"`
	Status string `json:"status"` // ok, warn (worth knowing) or fail (something is wrong)
	Detail string `json:"detail,omitempty"`
	Action string `json:"action,omitempty"`
	Data   any    `json:"data,omitempty"`
}

// Statuses of a Finding.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
)

// DoctorReport is `fleet doctor -o json`.
type DoctorReport struct {
	OK       bool      `json:"ok"`
	Server   string    `json:"server"`
	Findings []Finding `json:"findings"`
}

// streamFullPct is how full a stream limit may get before doctor fails.
const streamFullPct = 90

// Run checks and prints the report; it fails when a finding fails.
func (c *DoctorCmd) Run(ctx context.Context, g *Globals) error {
	rep := c.check(ctx, g)
	if c.JSON() {
		if err := printJSON(rep); err != nil {
			return err
		}
	} else {
		printDoctor(rep)
	}
	if !rep.OK {
		n := 0
		for _, f := range rep.Findings {
			if f.Status == statusFail {
				n++
			}
		}
		return fmt.Errorf("doctor: %d problem(s) found; see what to do above", n)
	}
	return nil
}

func (c *DoctorCmd) check(ctx context.Context, g *Globals) (rep DoctorReport) {
	rep = DoctorReport{Server: g.URL()}
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }
	defer func() {
		rep.OK = true
		for _, f := range rep.Findings {
			rep.OK = rep.OK && f.Status != statusFail
		}
	}()
	nc, err := g.Connect("fleet doctor")
	if err != nil {
		add(Finding{Check: "server", Status: statusFail, Detail: err.Error(),
			Action: "start the server (systemctl start fleet-server, or fleet server), or point --nats / FLEET_NATS at it"})
		return rep
	}
	defer nc.Close()
	add(Finding{Check: "server", Status: statusOK, Detail: "NATS answers at " + g.URL()})

	js, err := jetstream.New(nc)
	if err == nil {
		add(c.streamFinding(ctx, js))
	}

	client := api.NewClient(nc)
	client.Timeout = c.Timeout
	health, err := c.health(ctx, client, g)
	if err != nil {
		add(Finding{Check: "projections", Status: statusFail, Detail: err.Error(),
			Action: "start the projection service (it runs inside 'fleet server'; alone: 'fleet project'), then run fleet doctor again; its health checks (lag, time travel, disk) could not be read"})
	} else {
		for _, ch := range health.Checks {
			f := healthFinding(ch, health)
			if st, err := client.Status(ctx); err == nil && ch.Name == "projections" && st.Skipped > 0 {
				f.Detail += fmt.Sprintf("; %d bad events skipped since start (%d forged): see the server's log", st.Skipped, st.Forged)
			}
			add(f)
		}
	}

	devs, err := client.EachDevice(ctx, api.ListOptions{Limit: api.MaxLimit}, 0)
	if err != nil {
		if health.Checks != nil { // the service answered health but not this
			add(Finding{Check: "devices", Status: statusFail, Detail: "cannot list devices: " + err.Error(),
				Action: "see the server's log; retry with a longer --timeout"})
		}
	} else {
		add(staleFinding(devs))
		add(failingFinding(devs))
		add(skewFinding(devs))
	}
	add(c.parkedFinding(ctx, js))
	return rep
}

func (c *DoctorCmd) streamFinding(ctx context.Context, js jetstream.JetStream) Finding {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	s, err := js.Stream(ctx, events.Stream)
	if err != nil {
		return Finding{Check: "stream", Status: statusFail, Detail: fmt.Sprintf("stream %s: %v", events.Stream, err),
			Action: "the server creates it on start: is 'fleet server' running here, with JetStream on (see its log)?"}
	}
	info := s.CachedInfo()
	cfg, st := info.Config, info.State
	data := map[string]any{"messages": st.Msgs, "bytes": st.Bytes, "maxMsgs": cfg.MaxMsgs, "maxBytes": cfg.MaxBytes,
		"maxAge": cfg.MaxAge.String(), "replicas": cfg.Replicas, "firstSeq": st.FirstSeq, "lastSeq": st.LastSeq}
	limits := []string{}
	worst := 0.0
	if cfg.MaxBytes > 0 {
		p := float64(st.Bytes) / float64(cfg.MaxBytes) * 100
		worst = max(worst, p)
		limits = append(limits, fmt.Sprintf("%s of %s bytes (%.0f%%)", bytesText(st.Bytes), bytesText(uint64(cfg.MaxBytes)), p))
	} else {
		limits = append(limits, bytesText(st.Bytes)+", no byte limit")
	}
	if cfg.MaxMsgs > 0 {
		p := float64(st.Msgs) / float64(cfg.MaxMsgs) * 100
		worst = max(worst, p)
		limits = append(limits, fmt.Sprintf("%d of %d events (%.0f%%)", st.Msgs, cfg.MaxMsgs, p))
	} else {
		limits = append(limits, fmt.Sprintf("%d events, no count limit", st.Msgs))
	}
	if cfg.MaxAge > 0 {
		limits = append(limits, "events older than "+cfg.MaxAge.String()+" are dropped")
	} else {
		limits = append(limits, "no age limit")
	}
	data["fullPct"] = worst
	f := Finding{Check: "stream", Status: statusOK, Detail: events.Stream + ": " + strings.Join(limits, "; "), Data: data}
	if worst >= streamFullPct {
		f.Status = statusFail
		f.Action = fmt.Sprintf("the stream is %.0f%% full: at its limit JetStream refuses new events; raise the limit (nats stream edit %s) or export and archive the log (fleet export)", worst, events.Stream)
	}
	return f
}

// health reads the server's health checks over NATS, or from --http.
func (c *DoctorCmd) health(ctx context.Context, client *api.Client, g *Globals) (api.HealthReport, error) {
	if c.HTTP == "" {
		return client.Health(ctx)
	}
	u := strings.TrimSuffix(c.HTTP, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	hc := &http.Client{Timeout: c.Timeout}
	if g.TLSCA != "" {
		pem, err := os.ReadFile(g.TLSCA)
		if err != nil {
			return api.HealthReport{}, fmt.Errorf("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/healthz", nil)
	if err != nil {
		return api.HealthReport{}, usagef("--http %q: %v", c.HTTP, err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return api.HealthReport{}, fmt.Errorf("GET %s/healthz: %w (is the server's --http at %s?)", u, err, c.HTTP)
	}
	defer resp.Body.Close()
	var rep api.HealthReport
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("GET %s/healthz: %s, not a health report: %v", u, resp.Status, err)
	}
	return rep, nil
}

// healthFinding turns one of the server's health checks into a finding,
// with what doctor adds to it (the lags).
func healthFinding(ch api.Check, rep api.HealthReport) Finding {
	f := Finding{Check: ch.Name, Status: statusOK, Data: ch.Detail}
	if !ch.OK {
		f.Status, f.Detail, f.Action = statusFail, ch.Reason, ch.Action
	}
	detail, _ := json.Marshal(ch.Detail)
	var m map[string]any
	_ = json.Unmarshal(detail, &m)
	num := func(k string) uint64 { v, _ := m[k].(float64); return uint64(v) }
	switch ch.Name {
	case "projections":
		if ch.OK {
			f.Detail = fmt.Sprintf("checkpoint %d, %d events behind the log", rep.Checkpoint, rep.Lag)
		}
	case "time travel":
		if ch.OK {
			cp, last := num("checkpoint"), num("streamLast")
			lag := uint64(0)
			if last > cp {
				lag = last - cp
			}
			f.Detail = fmt.Sprintf("index at %d, %d events behind the log", cp, lag)
		}
	case "disk":
		if ch.OK {
			f.Detail = fmt.Sprintf("%s: %s free of %s", m["path"], bytesText(num("freeBytes")), bytesText(num("totalBytes")))
		}
	case "auth":
		if on, _ := m["enabled"].(bool); on {
			f.Detail = "on: devices and clients need credentials; the HTTP API a token"
		} else {
			f.Status, f.Detail = statusWarn, "off: anyone who reaches the NATS port or the HTTP API can read and write the log"
			f.Action = "for devices outside this host, run the server with --auth (see 'fleet server --help')"
		}
	case "jetstream":
		if ch.OK {
			f.Detail = "JetStream takes writes"
		}
	}
	return f
}

func staleFinding(devs []projections.Device) Finding {
	var stale []string
	for _, d := range devs {
		if cond(d, projections.CondStale) == projections.True {
			stale = append(stale, d.Device)
		}
	}
	f := Finding{Check: "devices stale", Status: statusOK, Detail: fmt.Sprintf("%d devices, none stale", len(devs))}
	if len(stale) > 0 {
		f.Status = statusFail
		f.Detail = fmt.Sprintf("%d of %d devices have sent no heartbeat within the TTL: %s", len(stale), len(devs), listText(stale))
		f.Action = "on each: systemctl status fleet-agent and journalctl -u fleet-agent (is it running, can it reach the server?)"
		f.Data = stale
	}
	return f
}

// failingFinding lists the devices whose own resources are in trouble:
// Degraded (resources Failed or unhealthy, or the manifest refused) or
// CrashLooping. That is the devices' workload, not the control plane, so it
// is a warning: doctor still exits 0 for it, and says where to look.
func failingFinding(devs []projections.Device) Finding {
	var ids, msgs []string
	for _, d := range devs {
		var why []string
		for _, t := range []string{projections.CondCrashLooping, projections.CondDegraded} {
			if c, ok := d.Condition(t); ok && c.Status == projections.True {
				why = append(why, t+": "+c.Message)
			}
		}
		if len(why) > 0 {
			ids = append(ids, d.Device)
			msgs = append(msgs, d.Device+" ("+strings.Join(why, "; ")+")")
		}
	}
	f := Finding{Check: "devices failing", Status: statusOK, Detail: "no device is Degraded or CrashLooping"}
	if len(ids) > 0 {
		if len(msgs) > 10 {
			msgs = append(msgs[:10], fmt.Sprintf("and %d more", len(ids)-10))
		}
		f.Status = statusWarn
		f.Detail = fmt.Sprintf("%d of %d devices are Degraded or CrashLooping: %s", len(ids), len(devs), strings.Join(msgs, "; "))
		f.Action = "fleet explain DEVICE says which resource, why and what happens next; fleet get devices lists the rest"
		f.Data = ids
	}
	return f
}

func skewFinding(devs []projections.Device) Finding {
	var skewed []string
	var msgs []string
	for _, d := range devs {
		for _, c := range d.Conditions {
			if c.Type == projections.CondClockSkew && c.Status == projections.True {
				skewed = append(skewed, d.Device)
				msgs = append(msgs, d.Device+": "+c.Message)
			}
		}
	}
	f := Finding{Check: "clock skew", Status: statusOK, Detail: "no device reports a skewed clock"}
	if len(skewed) > 0 {
		f.Status = statusFail
		f.Detail = fmt.Sprintf("%d devices' clocks are off: %s", len(skewed), strings.Join(msgs, "; "))
		f.Action = "on each: timedatectl status, and enable time sync (systemctl enable --now systemd-timesyncd); the agent corrects its stamps meanwhile"
		f.Data = skewed
	}
	return f
}

// parkedFinding reads every device's heartbeat for the events its agent
// keeps because the log refused them.
func (c *DoctorCmd) parkedFinding(ctx context.Context, js jetstream.JetStream) Finding {
	f := Finding{Check: "parked events", Status: statusOK, Detail: "no heartbeat reports parked events"}
	if js == nil {
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, events.HeartbeatBucket)
	if err != nil {
		f.Status, f.Detail = statusWarn, "cannot read the heartbeat bucket: "+err.Error()
		return f
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		f.Status, f.Detail = statusWarn, "cannot list heartbeats: "+err.Error()
		return f
	}
	parked := map[string]int{}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var hb agent.Heartbeat
		if json.Unmarshal(e.Value(), &hb) == nil && hb.Parked > 0 {
			parked[k] = hb.Parked
		}
	}
	if err := keys.Stop(); err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		_ = err
	}
	if len(parked) > 0 {
		ids := make([]string, 0, len(parked))
		for id, n := range parked {
			ids = append(ids, fmt.Sprintf("%s (%d)", id, n))
		}
		sort.Strings(ids)
		f.Status = statusFail
		f.Detail = "devices keep events the log refused for good: " + strings.Join(ids, ", ")
		f.Action = "on each: fleet-agent --device ID --parked (with the agent stopped) lists them; they usually exceed the server's max payload"
		f.Data = parked
	}
	return f
}

func listText(ids []string) string {
	if len(ids) > 10 {
		return strings.Join(ids[:10], ", ") + fmt.Sprintf(" and %d more", len(ids)-10)
	}
	return strings.Join(ids, ", ")
}

func printDoctor(rep DoctorReport) {
	mark := map[string]string{statusOK: "ok  ", statusWarn: "warn", statusFail: "FAIL"}
	for _, f := range rep.Findings {
		fmt.Printf("%s  %-14s %s\n", mark[f.Status], f.Check, f.Detail)
		if f.Action != "" {
			fmt.Printf("      %-14s -> %s\n", "", f.Action)
		}
	}
	if rep.OK {
		fmt.Println("\nno problems found")
	}
}
