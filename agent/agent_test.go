package agent_test

import (
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

func threeFiles(v string) []events.Resource {
	return []events.Resource{
		fileRes("motd", "/etc/motd", "hello "+v+"\n"),
		fileRes("app-conf", "/etc/app/app.conf", "port=80 "+v+"\n"),
		fileRes("banner", "/srv/banner.txt", "banner "+v+"\n"),
	}
}

func TestThreeFileManifestConvergesToReady(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	gen := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "3 Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	is.Equal(readFile(t, r.path("/etc/motd")), "hello v1\n")
	is.Equal(readFile(t, r.path("/etc/app/app.conf")), "port=80 v1\n")
	is.Equal(readFile(t, r.path("/srv/banner.txt")), "banner v1\n")
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "pi-01")
	checkLog(t, log)
	is.Equal(len(ofType(log, events.TypeDeviceRegistered, "")), 1)
	for _, id := range []string{"motd", "app-conf", "banner"} {
		var path []string
		for _, s := range ofType(log, events.TypeStatusChanged, id) {
			p, _ := s.Payload()
			path = append(path, p.(*events.StatusChanged).To)
		}
		is.Equal(strings.Join(path, ">"), "Pending>Reconciling>Ready") // each resource's history
		att := ofType(log, events.TypeReconcileAttempted, id)
		is.Equal(len(att), 1)
		p, _ := att[0].Payload()
		is.Equal(p.(*events.ReconcileAttempted).Outcome, events.OutcomeSucceeded)
		is.Equal(p.(*events.ReconcileAttempted).Attempt, 1)
		is.Equal(att[0].Generation, gen)
	}
}

func TestNewGenerationConverges(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	gen1 := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "gen 1 Ready", func() bool { return allReady(r.h.Agent, 3, gen1) })
	rs := threeFiles("v1")
	rs[0].File.Content = "hello v2\n"
	gen2 := apply(t, r.env, "pi-01", rs...)
	waitFor(t, 10*time.Second, "gen 2 Ready", func() bool { return allReady(r.h.Agent, 3, gen2) })
	is.Equal(readFile(t, r.path("/etc/motd")), "hello v2\n")
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "pi-01")
	checkLog(t, log)
	is.Equal(len(ofType(log, events.TypeReconcileAttempted, "motd")), 2)   // changed spec: applied again
	is.Equal(len(ofType(log, events.TypeReconcileAttempted, "banner")), 1) // unchanged spec: left alone
}

func TestRemovedResourceIsDeleted(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	gen1 := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "gen 1 Ready", func() bool { return allReady(r.h.Agent, 3, gen1) })
	gen2 := apply(t, r.env, "pi-01", threeFiles("v1")[:2]...)
	waitFor(t, 10*time.Second, "banner removed", func() bool { return allReady(r.h.Agent, 2, gen2) })
	_, err := os.Stat(r.path("/srv/banner.txt"))
	is.True(os.IsNotExist(err)) // the file is deleted
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "pi-01")
	checkLog(t, log)
	sc := ofType(log, events.TypeStatusChanged, "banner")
	p, _ := sc[len(sc)-1].Payload()
	is.Equal(p.(*events.StatusChanged).To, string(fsm.Removed)) // history closed by Removed
	is.Equal(sc[len(sc)-1].Generation, gen2)
}

func TestTamperedFileIsCorrectedAndDriftNamesTheDifference(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01", agent.WithDriftInterval(200*time.Millisecond))
	gen := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	is.NoErr(os.WriteFile(r.path("/etc/motd"), []byte("tampered\n"), 0o644))
	waitFor(t, 10*time.Second, "motd corrected", func() bool {
		b, _ := os.ReadFile(r.path("/etc/motd"))
		return string(b) == "hello v1\n" && allReady(r.h.Agent, 3, gen)
	})
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return r.h.Agent.OutboxLen() == 0 })
	log := deviceLog(t, r.env, "pi-01")
	checkLog(t, log)
	drift := ofType(log, events.TypeDriftDetected, "motd")
	is.True(len(drift) >= 1)
	p, _ := drift[0].Payload()
	d := p.(*events.DriftDetected)
	is.Equal(d.Policy, events.DriftCorrect)
	is.Equal(d.Differences[0].Field, "content") // names what differed
	is.Equal(len(ofType(log, events.TypeDriftDetected, "banner")), 0)
}

func TestDriftPolicyReportLeavesTheFileAlone(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01", agent.WithDriftInterval(100*time.Millisecond))
	rs := threeFiles("v1")
	rs[0].DriftPolicy = events.DriftReport
	gen := apply(t, r.env, "pi-01", rs...)
	waitFor(t, 10*time.Second, "Ready", func() bool { return allReady(r.h.Agent, 3, gen) })
	is.NoErr(os.WriteFile(r.path("/etc/motd"), []byte("local edit\n"), 0o644))
	waitFor(t, 10*time.Second, "drift reported", func() bool {
		for _, e := range r.rec.all() {
			if e.Type == events.TypeDriftDetected {
				return true
			}
		}
		return false
	})
	time.Sleep(500 * time.Millisecond) // several intervals
	is.Equal(readFile(t, r.path("/etc/motd")), "local edit\n")
	n := 0
	for _, e := range r.rec.all() {
		if e.Type == events.TypeDriftDetected {
			n++
		}
	}
	is.Equal(n, 1) // reported once while the difference stays the same
}

func TestUnknownKindFailsAndTheRestConverge(t *testing.T) {
	is := is.New(t)
	r := newRig(t, "pi-01")
	// A newer control plane's kind: written by hand, since apply refuses it.
	rs := append(threeFiles("v1"), events.Resource{ID: "gizmo", Kind: "gizmo", Raw: []byte(`{"x":1}`)})
	m := events.Manifest{Resources: rs}
	e, err := events.New("pi-01", "", 1, "user:test", &events.ManifestApplied{Manifest: m, Digest: m.Digest()})
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	clock.Stamp(&e)
	_, err = r.env.Store.AppendManifest(t.Context(), e, 0)
	is.NoErr(err)
	waitFor(t, 10*time.Second, "gizmo Failed, files Ready", func() bool {
		st := r.h.Agent.Status()
		return len(st) == 4 && st["gizmo"].State == fsm.Failed && st["motd"].State == fsm.Ready &&
			st["app-conf"].State == fsm.Ready && st["banner"].State == fsm.Ready
	})
	is.Equal(r.h.Agent.Status()["gizmo"].Reason, agent.ReasonUnknownKind)
}

func TestRejectedManifestKeepsTheLastGoodOne(t *testing.T) {
	is := is.New(t)
	var refuse atomic.Bool
	r := newRig(t, "pi-01", agent.WithManifestCheck(func(s events.Stored, m *events.ManifestApplied) error {
		if refuse.Load() {
			return os.ErrPermission
		}
		return nil
	}))
	gen1 := apply(t, r.env, "pi-01", threeFiles("v1")...)
	waitFor(t, 10*time.Second, "gen 1 Ready", func() bool { return allReady(r.h.Agent, 3, gen1) })
	refuse.Store(true)
	gen2 := apply(t, r.env, "pi-01", threeFiles("v2")...)
	waitFor(t, 10*time.Second, "ManifestRejected", func() bool {
		for _, e := range r.rec.all() {
			if e.Type == events.TypeManifestRejected {
				p, _ := e.Payload()
				mr := p.(*events.ManifestRejected)
				return mr.Generation == gen2 && mr.KeptGeneration == gen1
			}
		}
		return false
	})
	is.Equal(r.h.Agent.Generation(), gen1)
	is.Equal(readFile(t, r.path("/etc/motd")), "hello v1\n")
}
