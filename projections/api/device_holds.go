package api

import (
	"context"

	"github.com/fleet-dev/fleet/projections"
)

// Holds lists the rollouts not ended that match a device, with whether
// each holds it and why (rollouts.Reader.HeldBy).
type Holds func(ctx context.Context, device string) ([]RolloutHold, error)

// DeviceView is a device as GET /api/devices/{id} serves it: the device
// read model and, when a rollout matches it, that rollout: its id, its
// state, whether it holds the device and why (its wave not started, the
// rollout paused, paced by --max-per-minute, the failure budget spent).
// Rollouts is omitted when no rollout matches, so such a device's JSON is
// byte for byte projections.Device's.
//
// Why at query time and not in the fold (projections.Fleet): a hold is a
// function of the rollout's state, not of the device's events alone. A
// device whose wave has not started has no event of its own in the
// rollout (no DeviceTargeted); the rollout's RolloutPaused or WaveStarted
// changes the hold of every device it matched, so folding it would mark
// every one of them dirty and rewrite them all with the checkpoint on each
// rollout decision (3,000 devices a pause), and the fold would have to
// carry each rollout's waves and selector beside the devices. Rollouts are
// few, and a rollout's log is its decisions and one DeviceTargeted per
// device it targeted (what the controller reads every step): reading them
// when one device is asked for always agrees with the log, and leaves the
// fold, its persistence and the golden read models as they were. Lists
// (GET /api/devices, the micro service the controller reads) do not carry
// it, so the controller's reads cost nothing more.
type DeviceView struct {
	projections.Device
	Rollouts      []RolloutHold `json:"rollouts,omitempty"`
	RolloutsError string        `json:"rolloutsError,omitempty"` // the rollouts could not be read: the device stands alone
}

// deviceView is one device with the rollouts holding it (WithHolds).
func (a *Server) deviceView(ctx context.Context, id string) (any, error) {
	v, err := a.device(Request{Device: id})
	if err != nil || a.holds == nil {
		return v, err
	}
	dv := DeviceView{Device: v.(projections.Device)}
	if dv.Rollouts, err = a.holds(ctx, id); err != nil {
		dv.RolloutsError = err.Error()
	}
	return dv, nil
}
