package agent_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fsm"
)

var (
	standinsOnce sync.Once
	standinsDir  string
	standinsErr  error
)

// useStandins builds the stand-in podman and systemctl once and puts them
// first on PATH for t; it returns the stand-ins' state folder.
func useStandins(t *testing.T, root string) string {
	t.Helper()
	standinsOnce.Do(func() {
		standinsDir, standinsErr = os.MkdirTemp("", "fleet-agent-standins-")
		if standinsErr == nil {
			standinsErr = reconciletest.BuildStandins(standinsDir)
		}
	})
	if standinsErr != nil {
		t.Fatal(standinsErr)
	}
	state := reconciletest.UseStandins(t, standinsDir)
	t.Setenv("FLEET_STANDIN_UNIT_DIR", filepath.Join(root, "etc/systemd/system"))
	return state
}

func healthRig(t *testing.T, device string, opts ...agent.Option) (*rig, string) {
	t.Helper()
	env := eventstest.Start(t, true)
	r := &rig{env: env, root: t.TempDir(), state: t.TempDir(), rec: &recorder{}}
	st := useStandins(t, r.root)
	r.nc = connect(t, env)
	r.start(t, device, opts...)
	return r, st
}

func status(a *agent.Agent, id string) agent.ResourceStatus {
	for _, s := range a.Status() {
		if s.ID == id {
			return s
		}
	}
	return agent.ResourceStatus{}
}

func containerWith(id string, h *events.HealthSpec) events.Resource {
	return events.Resource{ID: id, Kind: events.KindContainer, Container: &events.ContainerSpec{Image: "nginx:1.27", Health: h}}
}

// statusEvents returns the agent's StatusChanged payloads for a resource.
func statusEvents(r *rig, id string) []*events.StatusChanged {
	var out []*events.StatusChanged
	for _, e := range r.rec.all() {
		if e.Type != events.TypeStatusChanged || e.Resource != id {
			continue
		}
		p, err := e.Payload()
		if err == nil {
			out = append(out, p.(*events.StatusChanged))
		}
	}
	return out
}

// A container whose readiness endpoint answers 500 is not Ready within
// period x failureThreshold + 1 s, with the reason and the probe's output,
// and Ready again after it recovers.
func TestReadinessFailureMakesAContainerNotReady(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(int(code.Load()))
		w.Write([]byte("db: " + http.StatusText(int(code.Load()))))
	}))
	defer srv.Close()
	r, _ := healthRig(t, "pi-h1")
	probe := &events.Probe{HTTP: &events.HTTPProbe{URL: srv.URL + "/healthz"}, Period: "1s", FailureThreshold: 2}
	gen := apply(t, r.env, "pi-h1", containerWith("web", &events.HealthSpec{Readiness: probe}))
	waitFor(t, 10*time.Second, "web Ready", func() bool { return allReady(r.h.Agent, 1, gen) })
	evs := statusEvents(r, "web")
	if evs[len(evs)-2].To != string(fsm.Unhealthy) || evs[len(evs)-2].Reason != agent.ReasonAwaitingReadiness {
		t.Fatalf("before its readiness passed the container was %s (%s), want Unhealthy (AwaitingReadiness)", evs[len(evs)-2].To, evs[len(evs)-2].Reason)
	}

	code.Store(500)
	deadline := 2*time.Second + time.Second // period x failureThreshold + 1 s
	waitFor(t, deadline, "web not Ready", func() bool { return status(r.h.Agent, "web").State == fsm.Unhealthy })
	st := status(r.h.Agent, "web")
	if st.Reason != agent.ReasonReadinessFailed || !strings.Contains(st.Error, "HTTP 500: db: Internal Server Error") {
		t.Fatalf("not Ready with reason %q, error %q", st.Reason, st.Error)
	}
	last := statusEvents(r, "web")
	sc := last[len(last)-1]
	if sc.Probe != "readiness" || sc.Failures != 2 || sc.Trigger != string(fsm.ProbeFailed) {
		t.Fatalf("StatusChanged says probe %q failures %d trigger %q", sc.Probe, sc.Failures, sc.Trigger)
	}

	code.Store(204)
	waitFor(t, 3*time.Second, "web Ready again", func() bool { return status(r.h.Agent, "web").State == fsm.Ready })
	checkLog(t, deviceLog(t, r.env, "pi-h1"))
}

// Liveness failures restart the container through podman, recorded as a
// ReconcileAttempted with trigger liveness; the status says the restarts.
func TestLivenessFailureRestartsTheContainer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens: liveness fails
	r, st := healthRig(t, "pi-h2")
	h := &events.HealthSpec{Liveness: &events.Probe{TCP: &events.TCPProbe{Port: port}, Period: "1s", FailureThreshold: 1},
		RestartBackoff: &events.RestartBackoff{Initial: "200ms"}}
	apply(t, r.env, "pi-h2", containerWith("web", h))
	var restarts []events.ReconcileAttempted
	waitFor(t, 15*time.Second, "2 restarts", func() bool {
		restarts = nil
		for _, e := range r.rec.all() {
			if e.Type == events.TypeReconcileAttempted && e.Resource == "web" {
				p, _ := e.Payload()
				if ra := p.(*events.ReconcileAttempted); ra.Trigger == "liveness" {
					restarts = append(restarts, *ra)
				}
			}
		}
		return len(restarts) >= 2
	})
	n := 0
	for _, c := range reconciletest.Calls(t, st) {
		if c == "podman restart fleet-web" {
			n++
		}
	}
	if n < 2 {
		t.Fatalf("podman restart ran %d times", n)
	}
	if len(restarts) < 2 || !strings.Contains(restarts[0].Output, "liveness probe failed 1 times") {
		t.Fatalf("restart attempts: %+v", restarts)
	}
	var failed *events.StatusChanged
	for _, sc := range statusEvents(r, "web") {
		if sc.Reason == agent.ReasonLivenessFailed {
			failed = sc
		}
	}
	if failed == nil || failed.NextRestart == nil || failed.Probe != "liveness" {
		t.Fatalf("no Unhealthy status naming the liveness probe and the next restart: %+v", statusEvents(r, "web"))
	}
	checkLog(t, deviceLog(t, r.env, "pi-h2"))
}

// A unit that systemd restarts again and again under Restart=always while
// is-active says active is CrashLooping; a start-limit hit is a failure
// with that reason.
func TestRestartingUnitIsCrashLooping(t *testing.T) {
	defer agent.SetKindHealthPeriod(agent.SetKindHealthPeriod(300 * time.Millisecond))
	r, st := healthRig(t, "pi-h3")
	unit := events.Resource{ID: "svc", Kind: events.KindSystemdUnit, SystemdUnit: &events.SystemdUnitSpec{
		Name: "svc.service", Content: "[Service]\nExecStart=/usr/bin/app\nRestart=always\n"}}
	gen := apply(t, r.env, "pi-h3", unit)
	waitFor(t, 10*time.Second, "svc Ready", func() bool { return allReady(r.h.Agent, 1, gen) })
	runtime := filepath.Join(st, "runtime")
	if err := os.MkdirAll(runtime, 0o755); err != nil {
		t.Fatal(err)
	}
	play := func(rt map[string]any) {
		b, _ := json.Marshal(rt)
		if err := os.WriteFile(filepath.Join(runtime, "svc.service"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	looked := func() int {
		n := 0
		for _, c := range reconciletest.Calls(t, st) {
			if strings.HasPrefix(c, "systemctl show -p ActiveState") {
				n++
			}
		}
		return n
	}
	waitFor(t, 5*time.Second, "the unit's health read", func() bool { return looked() > 0 })
	for n := 1; n <= 4; n++ {
		play(map[string]any{"NRestarts": n}) // active, running, restarted n times
		time.Sleep(400 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "svc CrashLooping", func() bool {
		s := status(r.h.Agent, "svc")
		return s.State == fsm.Unhealthy && s.Reason == agent.ReasonCrashLooping
	})
	if s := status(r.h.Agent, "svc"); !strings.Contains(s.Error, "NRestarts=") {
		t.Fatalf("crash loop status says %q", s.Error)
	}
	play(map[string]any{"NRestarts": 4, "ActiveState": "failed", "SubState": "failed", "Result": "start-limit-hit"})
	waitFor(t, 5*time.Second, "svc Failed: start limit hit", func() bool {
		for _, sc := range statusEvents(r, "svc") {
			if sc.To == string(fsm.Failed) && sc.Reason == "StartLimitHit" && strings.Contains(sc.Error, "Result=start-limit-hit") {
				return true
			}
		}
		return false
	})
	checkLog(t, deviceLog(t, r.env, "pi-h3"))
}

// A steady healthy device writes no probe events: probes run, nothing is
// recorded while their verdict holds.
func TestSteadyHealthyDeviceWritesNoProbeEvents(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	r, _ := healthRig(t, "pi-h4")
	port := ln.Addr().(*net.TCPAddr).Port
	h := &events.HealthSpec{Readiness: &events.Probe{TCP: &events.TCPProbe{Port: port}, Period: "1s"},
		Liveness: &events.Probe{TCP: &events.TCPProbe{Port: port}, Period: "1s"}}
	gen := apply(t, r.env, "pi-h4", containerWith("a", h), containerWith("b", h))
	waitFor(t, 10*time.Second, "Ready", func() bool { return allReady(r.h.Agent, 2, gen) })
	before := len(r.rec.all())
	runs := accepted.Load()
	time.Sleep(3500 * time.Millisecond)
	if got := accepted.Load() - runs; got < 8 {
		t.Fatalf("only %d probe connections in 3.5 s: the probes did not run", got)
	}
	if evs := r.rec.all()[before:]; len(evs) != 0 {
		t.Fatalf("a steady healthy device wrote %d events, the first %s", len(evs), evs[0].Type)
	}
}

// An exec probe on an agent not allowed to run programs fails the resource
// with a reason that says so, and runs nothing.
func TestExecProbeNeedsAllowExec(t *testing.T) {
	r, st := healthRig(t, "pi-h5")
	h := &events.HealthSpec{Liveness: &events.Probe{Exec: &events.ExecProbe{Argv: []string{"/bin/true"}}}}
	apply(t, r.env, "pi-h5", containerWith("web", h))
	waitFor(t, 10*time.Second, "web Failed", func() bool { return status(r.h.Agent, "web").State == fsm.Failed })
	s := status(r.h.Agent, "web")
	if s.Reason != agent.ReasonExecProbeNotAllowed || !strings.Contains(s.Error, "--allow-exec") {
		t.Fatalf("failed with %q: %q", s.Reason, s.Error)
	}
	for _, c := range reconciletest.Calls(t, st) {
		if strings.HasPrefix(c, "podman run") {
			t.Fatalf("the container was run: %s", c)
		}
	}
}

// A container with no probe written is judged by what podman says: its
// own healthcheck reporting unhealthy makes it not Ready (with the check's
// output), healthy again makes it Ready.
func TestContainerOwnHealthcheckIsSeen(t *testing.T) {
	defer agent.SetKindHealthPeriod(agent.SetKindHealthPeriod(300 * time.Millisecond))
	r, st := healthRig(t, "pi-h6")
	gen := apply(t, r.env, "pi-h6", containerWith("web", nil))
	waitFor(t, 10*time.Second, "web Ready", func() bool { return allReady(r.h.Agent, 1, gen) })
	file := filepath.Join(st, "containers", "fleet-web.json")
	setHealth := func(status string, streak int) {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		c["State"].(map[string]any)["Health"] = map[string]any{"Status": status, "FailingStreak": streak,
			"Log": []map[string]any{{"ExitCode": 1, "Output": "curl: (7) Failed to connect"}}}
		b, _ = json.Marshal(c)
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setHealth("unhealthy", 3)
	waitFor(t, 5*time.Second, "web Unhealthy", func() bool { return status(r.h.Agent, "web").State == fsm.Unhealthy })
	if s := status(r.h.Agent, "web"); s.Reason != "HealthcheckFailing" || !strings.Contains(s.Error, "Failed to connect") {
		t.Fatalf("Unhealthy with %q: %q", s.Reason, s.Error)
	}
	setHealth("healthy", 0)
	waitFor(t, 5*time.Second, "web Ready again", func() bool { return status(r.h.Agent, "web").State == fsm.Ready })
	checkLog(t, deviceLog(t, r.env, "pi-h6"))
}
