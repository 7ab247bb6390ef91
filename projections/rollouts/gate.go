package rollouts

import (
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/rollout"
)

// Verdict is where one targeted device of a wave stands.
type Verdict int

// Verdicts of Judge.
const (
	Waiting Verdict = iota // still converging, or Ready but not yet for the soak
	Passed                 // at the rollout's generation, every resource Ready and healthy for the soak
	Failed                 // counts against the budget
	Offline                // Stale: counted apart (inconclusive past the deadline)
)

func (v Verdict) String() string {
	return [...]string{"waiting", "passed", "failed", "offline"}[v]
}

// reasonAwaitingReadiness is the agent's reason of an applied resource
// whose readiness probe has not passed yet (agent.ReasonAwaitingReadiness):
// not Ready yet, not a failure either.
const reasonAwaitingReadiness = "AwaitingReadiness"

// Judge says where a targeted device stands at now, from its read model
// alone (pure, so that `fleet replay --verify` re-derives the gate from the
// log): Stale is offline; below the rollout's generation it is waiting;
// a resource Failed at that generation, or Unhealthy for any reason but
// AwaitingReadiness (its readiness failed after it was Ready, its
// liveness failed, its kind's own health is down, it crash-loops), or a
// liveness restart at that generation, or the device CrashLooping, or the
// agent refusing the generation (Degraded: ManifestRejected) is failed;
// every resource Ready, the generation settled and Ready since at least
// soak is passed. A device that goes Unhealthy and back to Ready restarts
// its soak (Ready's Since is the new time). The reason says why.
func Judge(d projections.Device, t *rollout.Target, soak time.Duration, now time.Time) (Verdict, string) {
	if st, ok := d.Condition(projections.CondStale); ok && st.Status == projections.True {
		return Offline, "offline (Stale): " + st.Message
	}
	if d.Generation < t.Generation {
		return Waiting, fmt.Sprintf("generation %d not yet at the rollout's %d", d.Generation, t.Generation)
	}
	if c, ok := d.Condition(projections.CondCrashLooping); ok && c.Status == projections.True {
		return Failed, "crash-looping: " + c.Message
	}
	if c, ok := d.Condition(projections.CondDegraded); ok && c.Status == projections.True && c.Reason == "ManifestRejected" {
		return Failed, "manifest rejected: " + c.Message
	}
	var readySince time.Time
	var converging string
	for _, res := range d.Resources {
		switch res.State {
		case "Failed":
			return Failed, fmt.Sprintf("resource %s Failed: %s", res.ID, res.Error)
		case "Unhealthy":
			if res.Health != nil && res.Health.Reason == reasonAwaitingReadiness {
				converging = res.ID + " awaiting readiness"
				continue
			}
			return Failed, fmt.Sprintf("resource %s Ready but unhealthy: %s", res.ID, healthText(res.Health))
		case "Ready":
			if res.Health != nil && res.Health.Restarts > 0 {
				return Failed, fmt.Sprintf("resource %s restarted %d times for failing liveness", res.ID, res.Health.Restarts)
			}
			if res.Since.After(readySince) {
				readySince = res.Since
			}
		default:
			converging = res.ID + " " + res.State
		}
	}
	if converging != "" {
		return Waiting, "converging: " + converging
	}
	if d.ObservedGeneration < t.Generation {
		return Waiting, fmt.Sprintf("generation %d not yet settled", t.Generation)
	}
	// Ready's Since is the device's own clock: one that runs behind would
	// start the soak before the device had the rollout's generation at all.
	// The targeting time is the control plane's: the soak never starts
	// before it. (A clock ahead only delays the pass, up to the wave
	// deadline, where the rollout pauses with the reason.)
	if readySince.Before(t.At) {
		readySince = t.At
	}
	if left := soak - now.Sub(readySince); left > 0 {
		return Waiting, fmt.Sprintf("soaking: Ready and healthy since %s, %s to go", readySince.UTC().Format(time.RFC3339), left.Round(time.Second))
	}
	return Passed, "Ready and healthy for the soak"
}

func healthText(h *projections.ResourceHealth) string {
	if h == nil {
		return "no health recorded"
	}
	s := h.Probe + " " + h.Reason
	if h.Failures > 0 {
		s += fmt.Sprintf(", %d failures in a row", h.Failures)
	}
	if h.Output != "" {
		s += fmt.Sprintf(", last output %q", h.Output)
	}
	return s
}
