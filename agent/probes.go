package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// maxProbes bounds the probes (and kind health reads) running at once,
// apart from the reconciler calls' own bound.
const maxProbes = 4

// probeRun is one probe run the loop started; its outcome comes back on
// loop.probeResults.
type probeRun struct {
	x        *resource
	h        *health
	t        *probeTrack
	target   reconcile.Target
	rc       reconcile.Reconciler
	ok       bool
	output   string
	reason   string // kind health: why it is down
	restarts int    // kind health: the kind's restart count
}

// probeHTTP is the client of http probes: no proxy (the URL is on the
// device), no redirects followed (a 3xx is an answer; off-device hosts are
// never asked), no keep-alive (a probe is one request every period), and
// 1 kB connection buffers, not 4 kB each way: a probe sends one short GET
// and reads a status line, a few headers and at most maxProbeOutput of body
// (longer header lines still read; the buffer only bounds one read), so
// 100 probe runs per 10 s allocate 600 kB less garbage (BENCHMARKS.md,
// "Agent memory: file pages and probe garbage").
var probeHTTP = &http.Client{
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, MaxResponseHeaderBytes: 64 << 10,
		ReadBufferSize: 1 << 10, WriteBufferSize: 1 << 10},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// runProbe runs one probe within its timeout: exec passes on exit 0, http
// on a status in its range, tcp when the connection opens. The output says
// what was seen, bounded to maxProbeOutput.
func runProbe(ctx context.Context, p *events.Probe, timing events.Timing) (ok bool, output string) {
	ctx, cancel := context.WithTimeout(ctx, timing.Timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		cmd := exec.CommandContext(ctx, p.Exec.Argv[0], p.Exec.Argv[1:]...)
		var out boundedBuffer
		out.max = maxProbeOutput
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		text := strings.TrimSpace(out.String())
		var exit *exec.ExitError
		switch {
		case ctx.Err() != nil:
			return false, fmt.Sprintf("exec %s: timed out after %s", p.Exec.Argv[0], timing.Timeout)
		case errors.As(err, &exit):
			return false, truncate(fmt.Sprintf("exit status %d: %s", exit.ExitCode(), text), maxProbeOutput)
		case err != nil:
			return false, truncate(err.Error(), maxProbeOutput)
		}
		return true, text
	case p.HTTP != nil:
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.HTTP.URL, nil)
		if err != nil {
			return false, err.Error()
		}
		req.Header.Set("User-Agent", "fleet-agent-probe/"+Version)
		resp, err := probeHTTP.Do(req)
		if err != nil {
			return false, truncate(err.Error(), maxProbeOutput)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeOutput))
		lo, hi := p.HTTP.StatusRange()
		text := "HTTP " + strconv.Itoa(resp.StatusCode)
		if b := strings.TrimSpace(string(body)); b != "" {
			text += ": " + b
		}
		return resp.StatusCode >= lo && resp.StatusCode <= hi, truncate(text, maxProbeOutput)
	case p.TCP != nil:
		host := p.TCP.Host
		if host == "" {
			host = "127.0.0.1"
		}
		addr := net.JoinHostPort(host, strconv.Itoa(p.TCP.Port))
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return false, truncate(err.Error(), maxProbeOutput)
		}
		c.Close()
		return true, "connected to " + addr
	}
	return false, "probe has no exec, http or tcp"
}

// boundedBuffer keeps the first max bytes written to it and drops the
// rest (a probe printing without end costs nothing).
type boundedBuffer struct {
	bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// run runs the probe of r (or reads the kind's health) and fills in its
// outcome.
func (r *probeRun) run(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			r.ok, r.output = false, fmt.Sprintf("probe panic: %v", p)
		}
	}()
	if r.t.probe != nil {
		r.ok, r.output = runProbe(ctx, r.t.probe, r.t.timing)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r.kindHealth(r.rc.(reconcile.HealthReporter).KindHealth(ctx, r.target))
}

// kindHealth fills in the outcome of a kind health read.
func (r *probeRun) kindHealth(kh reconcile.KindHealth, err error) {
	if err != nil {
		// the tool could not say: not a health verdict, keep the last one
		r.ok, r.output, r.reason, r.restarts = r.t.passing, truncate(err.Error(), maxProbeOutput), r.t.reason, -1
		return
	}
	r.ok, r.output, r.reason, r.restarts = !kh.Down, truncate(kh.Detail, maxProbeOutput), kh.Reason, kh.Restarts
}

// runKindHealthBatch reads the kind health of every run of rs (one
// reconciler, a reconcile.BatchHealthReporter) in one call and fills in
// each outcome as run does.
func runKindHealthBatch(ctx context.Context, rs []*probeRun) {
	defer func() {
		if p := recover(); p != nil {
			for _, r := range rs {
				r.ok, r.output = false, fmt.Sprintf("probe panic: %v", p)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ts := make([]reconcile.Target, len(rs))
	for i, r := range rs {
		ts[i] = r.target
	}
	out := rs[0].rc.(reconcile.BatchHealthReporter).KindHealthBatch(ctx, ts)
	for i, r := range rs {
		if i >= len(out) {
			r.ok, r.output, r.reason, r.restarts = r.t.passing, "kind health: no answer for it in the batch", r.t.reason, -1
			continue
		}
		r.kindHealth(out[i].Health, out[i].Err)
	}
}
