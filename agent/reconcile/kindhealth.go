package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// KindHealth is what a resource's kind says of its health with no probe
// written: a container's state, exit code, restart count and its own
// healthcheck (podman inspect); a unit's ActiveState, SubState, Result and
// NRestarts (systemctl show).
type KindHealth struct {
	Down     bool   // not running as it should: the agent makes it not Ready
	Reason   string // ContainerExited, HealthcheckFailing, UnitFailed, StartLimitHit, Restarting
	Detail   string // what the tool said, for the status event
	Restarts int    // restarts by the kind's own policy (podman RestartCount, systemd NRestarts)
}

// HealthReporter is an optional capability of a Reconciler: KindHealth
// reads the kind's own health of a resource that was applied. The agent
// calls it on its probe scheduler and sees a crash loop from Restarts
// rising (reconcile never restarts anything here).
type HealthReporter interface {
	KindHealth(ctx context.Context, t Target) (KindHealth, error)
}

// BatchHealthReporter is a HealthReporter that reads many resources' health
// in one call (the agent batches the kind health reads due together).
// KindHealthBatch returns one result per target, in order.
type BatchHealthReporter interface {
	HealthReporter
	KindHealthBatch(ctx context.Context, ts []Target) []KindHealthResult
}

// KindHealthResult is one target's answer of KindHealthBatch.
type KindHealthResult struct {
	Health KindHealth
	Err    error
}

// containerHealth is the part of podman inspect KindHealth reads.
type containerHealth struct {
	Name         string `json:"Name"`
	RestartCount int    `json:"RestartCount"`
	State        struct {
		Status   string `json:"Status"`
		Running  bool   `json:"Running"`
		ExitCode int    `json:"ExitCode"`
		Health   *struct {
			Status        string `json:"Status"`
			FailingStreak int    `json:"FailingStreak"`
			Log           []struct {
				ExitCode int    `json:"ExitCode"`
				Output   string `json:"Output"`
			} `json:"Log"`
		} `json:"Health"`
	} `json:"State"`
}

// KindHealth reads podman inspect: a stopped container is down
// (ContainerExited, with its exit code); a running one whose own
// healthcheck says unhealthy is down (HealthcheckFailing, with the last
// check's output).
func (r *Container) KindHealth(ctx context.Context, t Target) (KindHealth, error) {
	if _, err := containerSpec(t); err != nil {
		return KindHealth{}, err
	}
	name := t.Resource.ContainerName()
	out, code, stderr, err := runTool(ctx, r.podman, "container", "inspect", "--format", "json", name)
	if err != nil {
		return KindHealth{}, err
	}
	if code != 0 {
		if strings.Contains(stderr, "no such container") {
			return KindHealth{Down: true, Reason: "ContainerAbsent", Detail: "no container " + name}, nil
		}
		return KindHealth{}, fmt.Errorf("podman container inspect %s: exit status %d: %s", name, code, stderr)
	}
	var cs []containerHealth
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs) == 0 {
		return KindHealth{}, fmt.Errorf("podman container inspect %s: unreadable output: %v", name, err)
	}
	return cs[0].health(name), nil
}

// KindHealthBatch reads the health of many containers with one podman
// inspect (one process for all, where KindHealth is one each: on a device
// with 50 containers that is most of what reading health costs). When the
// batch call fails (a container is missing: podman then exits 125) each
// container is read on its own, so each gets its own answer.
func (r *Container) KindHealthBatch(ctx context.Context, ts []Target) []KindHealthResult {
	out := make([]KindHealthResult, len(ts))
	args := []string{"container", "inspect", "--format", "json"}
	for i, t := range ts {
		if _, err := containerSpec(t); err != nil {
			out[i].Err = err
			continue
		}
		args = append(args, t.Resource.ContainerName())
	}
	one := func() []KindHealthResult {
		for i, t := range ts {
			if out[i].Err == nil {
				out[i].Health, out[i].Err = r.KindHealth(ctx, t)
			}
		}
		return out
	}
	if len(args) <= 5 {
		return one()
	}
	stdout, code, _, err := runTool(ctx, r.podman, args...)
	if err != nil || code != 0 {
		return one()
	}
	var cs []containerHealth
	if err := json.Unmarshal([]byte(stdout), &cs); err != nil {
		return one()
	}
	byName := make(map[string]*containerHealth, len(cs))
	for i := range cs {
		byName[strings.TrimPrefix(cs[i].Name, "/")] = &cs[i]
	}
	for i, t := range ts {
		if out[i].Err != nil {
			continue
		}
		name := t.Resource.ContainerName()
		if c := byName[name]; c != nil {
			out[i].Health = c.health(name)
		} else {
			out[i].Health, out[i].Err = r.KindHealth(ctx, t)
		}
	}
	return out
}

// health judges one container as podman inspect showed it.
func (c *containerHealth) health(name string) KindHealth {
	h := KindHealth{Restarts: c.RestartCount,
		Detail: fmt.Sprintf("container %s is %s, restarted %d times by its policy", name, c.State.Status, c.RestartCount)}
	switch {
	case !c.State.Running:
		h.Down, h.Reason = true, "ContainerExited"
		h.Detail = fmt.Sprintf("container %s is %s, exit code %d", name, c.State.Status, c.State.ExitCode)
	case c.State.Health != nil && c.State.Health.Status == "unhealthy":
		h.Down, h.Reason = true, "HealthcheckFailing"
		h.Detail = fmt.Sprintf("its own healthcheck failed %d times in a row", c.State.Health.FailingStreak)
		if l := c.State.Health.Log; len(l) > 0 {
			h.Detail += fmt.Sprintf(": exit %d: %s", l[len(l)-1].ExitCode, l[len(l)-1].Output)
		}
	}
	return h
}

// KindHealth reads systemctl show: ActiveState failed is down (UnitFailed
// with its Result, or StartLimitHit when Result is start-limit-hit);
// SubState auto-restart is down (Restarting). NRestarts is the restart
// count under Restart=, which is-active hides.
func (r *SystemdUnit) KindHealth(ctx context.Context, t Target) (KindHealth, error) {
	u, _, err := r.unit(t)
	if err != nil {
		return KindHealth{}, err
	}
	out, err := mustTool(ctx, r.systemctl, "show", "-p", "ActiveState,SubState,Result,NRestarts", u.Name)
	if err != nil {
		return KindHealth{}, err
	}
	p := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			p[k] = v
		}
	}
	detail := fmt.Sprintf("unit %s: ActiveState=%s SubState=%s Result=%s NRestarts=%s", u.Name, p["ActiveState"], p["SubState"], p["Result"], p["NRestarts"])
	h := KindHealth{Detail: detail}
	h.Restarts, _ = strconv.Atoi(p["NRestarts"])
	switch {
	case p["Result"] == "start-limit-hit":
		h.Down, h.Reason, h.Detail = true, "StartLimitHit", detail+": systemd stopped restarting it (StartLimitBurst within StartLimitIntervalSec)"
	case p["ActiveState"] == "failed":
		h.Down, h.Reason, h.Detail = true, "UnitFailed", detail
	case p["SubState"] == "auto-restart":
		h.Down, h.Reason, h.Detail = true, "Restarting", detail
	}
	if u.WantActive() && h.Reason == "" && p["ActiveState"] != "active" && p["ActiveState"] != "activating" && p["ActiveState"] != "reloading" {
		h.Down, h.Reason, h.Detail = true, "UnitInactive", detail
	}
	return h, nil
}

var _ BatchHealthReporter = (*Container)(nil)
