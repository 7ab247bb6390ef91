package events

import (
	"fmt"
	"time"
)

// A rollout is on the log as events of its own (package rollout holds its
// transition table and its wave membership). Its decisions are on one
// subject, fleet.@rollout.<id>, written compare-and-set by the control
// plane, so that two controllers never both act on one rollout; '@' is not
// in the id alphabet, so no device's subjects can ever be those. A
// decision's envelope names no device: Device is empty and Resource is the
// rollout id. DeviceTargeted is the exception: it is on the targeted
// device's own subject, fleet.<device>.rollout.<id> (Device the device,
// Resource the rollout id), written compare-and-set expecting an empty
// subject, so a device's history stays one filter and no device is ever
// targeted twice by one rollout.

// Rollout event types.
const (
	TypeRolloutStarted    = "RolloutStarted"
	TypeWaveStarted       = "WaveStarted"
	TypeDeviceTargeted    = "DeviceTargeted"
	TypeWavePassed        = "WavePassed"
	TypeWaveFailed        = "WaveFailed"
	TypeRolloutPaused     = "RolloutPaused"
	TypeRolloutResumed    = "RolloutResumed"
	TypeRolloutAborted    = "RolloutAborted"
	TypeRolloutRolledBack = "RolloutRolledBack"
	TypeRolloutSucceeded  = "RolloutSucceeded"
	TypeRolloutSuperseded = "RolloutSuperseded"
)

// KindRollout is the subject kind of DeviceTargeted; RolloutToken the
// second token of a rollout's decision subject.
const (
	KindRollout  = "rollout"
	RolloutToken = "@rollout"
)

// RolloutSubject is where a rollout's decisions are appended.
func RolloutSubject(rollout string) string {
	return fmt.Sprintf("%s.%s.%s", Prefix, RolloutToken, rollout)
}

// RolloutsFilter matches every rollout's decisions.
const RolloutsFilter = Prefix + "." + RolloutToken + ".*"

// TargetedSubject is where a rollout records that it targeted a device.
func TargetedSubject(device, rollout string) string {
	return fmt.Sprintf("%s.%s.%s.%s", Prefix, device, KindRollout, rollout)
}

// IsRolloutDecision reports whether t is a rollout's decision (on the
// rollout's subject, no device); DeviceTargeted is not one.
func IsRolloutDecision(t string) bool {
	s, ok := payloadTypes[t]
	return ok && s.noDevice
}

// On failure of a rollout (RolloutStarted.OnFailure).
const (
	OnFailurePause    = "pause"
	OnFailureRollback = "rollback"
)

// RolloutStarted: an operator started a rollout of Manifest to the devices
// matching Selector (Devices, sorted, as matched when it started), in
// Waves (each a count, "5", or a cumulative percent, "25%", the last 100%).
type RolloutStarted struct {
	Selector          string        `json:"selector"`
	Manifest          Manifest      `json:"manifest"`
	Digest            string        `json:"digest"`
	Waves             []string      `json:"waves"`
	Devices           []string      `json:"devices"`
	MaxFailures       int           `json:"maxFailures"`
	MaxFailurePercent float64       `json:"maxFailurePercent,omitempty"`
	Soak              time.Duration `json:"soakNs"`
	WaveDeadline      time.Duration `json:"waveDeadlineNs"`
	OnFailure         string        `json:"onFailure"`
	MaxPerMinute      int           `json:"maxPerMinute,omitempty"`
}

func (p *RolloutStarted) check() error {
	if len(p.Waves) == 0 {
		return fmt.Errorf("waves: at least one")
	}
	if p.OnFailure != OnFailurePause && p.OnFailure != OnFailureRollback {
		return fmt.Errorf("onFailure %q: must be %s or %s", p.OnFailure, OnFailurePause, OnFailureRollback)
	}
	if p.MaxFailures < 0 || p.MaxFailurePercent < 0 || p.MaxFailurePercent > 100 || p.MaxPerMinute < 0 || p.Soak < 0 || p.WaveDeadline < 0 {
		return fmt.Errorf("maxFailures, maxFailurePercent (0 to 100), maxPerMinute, soak, waveDeadline: must not be negative")
	}
	for _, d := range p.Devices {
		if err := CheckID("device", d); err != nil {
			return err
		}
	}
	return nil
}

// WaveStarted: the rollout began wave Wave (0-based) with these devices
// (package rollout's membership: replay recomputes it).
type WaveStarted struct {
	Wave    int      `json:"wave"`
	Devices []string `json:"devices"`
}

// DeviceTargeted: the rollout gave the device (the envelope's) its
// manifest as generation Generation; Previous* is what it had before (the
// manifest a rollback brings back; PreviousGeneration 0: none).
type DeviceTargeted struct {
	Wave               int    `json:"wave"`
	Generation         int64  `json:"generation"`
	PreviousGeneration int64  `json:"previousGeneration"`
	PreviousDigest     string `json:"previousDigest,omitempty"`
	Joined             bool   `json:"joined,omitempty"` // matched the selector only after the rollout started
}

// WavePassed: every device of the wave was at the rollout's generation,
// all its resources Ready, for the soak (or an operator promoted it).
type WavePassed struct {
	Wave     int  `json:"wave"`
	Devices  int  `json:"devices"`
	Promoted bool `json:"promoted,omitempty"`
}

// WaveFailed: the wave spent the failure budget.
type WaveFailed struct {
	Wave   int      `json:"wave"`
	Failed []string `json:"failed"`
	Reason string   `json:"reason"`
}

// RolloutPaused: by an operator, by a spent budget (on-failure pause) or
// as inconclusive (devices offline past the wave deadline, Offline).
type RolloutPaused struct {
	Reason       string   `json:"reason"`
	Inconclusive bool     `json:"inconclusive,omitempty"`
	Offline      []string `json:"offline,omitempty"`
}

// RolloutResumed: an operator resumed a paused rollout.
type RolloutResumed struct {
	Reason string `json:"reason,omitempty"`
}

// RolloutAborted: an operator stopped the rollout; devices keep what they have.
type RolloutAborted struct {
	Reason string `json:"reason,omitempty"`
}

// RolloutRolledBack: every device the rollout changed was given a new
// generation carrying its previous manifest (Devices).
type RolloutRolledBack struct {
	Reason  string   `json:"reason"`
	Devices []string `json:"devices"`
	// KeyID declares the key the controller signed the rollback
	// generations with (its own: see rollouts.WithSigner); empty: unsigned.
	KeyID string `json:"keyID,omitempty"`
}

// RolloutSucceeded: every wave passed.
type RolloutSucceeded struct {
	Devices int `json:"devices"`
}

// RolloutSuperseded: a newer rollout (By) took over devices of this one.
type RolloutSuperseded struct {
	By string `json:"by"`
}

func (RolloutStarted) EventType() string    { return TypeRolloutStarted }
func (WaveStarted) EventType() string       { return TypeWaveStarted }
func (DeviceTargeted) EventType() string    { return TypeDeviceTargeted }
func (WavePassed) EventType() string        { return TypeWavePassed }
func (WaveFailed) EventType() string        { return TypeWaveFailed }
func (RolloutPaused) EventType() string     { return TypeRolloutPaused }
func (RolloutResumed) EventType() string    { return TypeRolloutResumed }
func (RolloutAborted) EventType() string    { return TypeRolloutAborted }
func (RolloutRolledBack) EventType() string { return TypeRolloutRolledBack }
func (RolloutSucceeded) EventType() string  { return TypeRolloutSucceeded }
func (RolloutSuperseded) EventType() string { return TypeRolloutSuperseded }

func (RolloutStarted) SchemaVersion() int    { return 1 }
func (WaveStarted) SchemaVersion() int       { return 1 }
func (DeviceTargeted) SchemaVersion() int    { return 1 }
func (WavePassed) SchemaVersion() int        { return 1 }
func (WaveFailed) SchemaVersion() int        { return 1 }
func (RolloutPaused) SchemaVersion() int     { return 1 }
func (RolloutResumed) SchemaVersion() int    { return 1 }
func (RolloutAborted) SchemaVersion() int    { return 1 }
func (RolloutRolledBack) SchemaVersion() int { return 1 }
func (RolloutSucceeded) SchemaVersion() int  { return 1 }
func (RolloutSuperseded) SchemaVersion() int { return 1 }

// RolloutTypes lists the rollout event types, decisions and DeviceTargeted.
func RolloutTypes() []string {
	return []string{TypeRolloutStarted, TypeWaveStarted, TypeDeviceTargeted, TypeWavePassed, TypeWaveFailed,
		TypeRolloutPaused, TypeRolloutResumed, TypeRolloutAborted, TypeRolloutRolledBack, TypeRolloutSucceeded, TypeRolloutSuperseded}
}

func init() {
	decision := func(f func() Payload) payloadSpec { return payloadSpec{1, true, true, f} }
	payloadTypes[TypeRolloutStarted] = decision(func() Payload { return new(RolloutStarted) })
	payloadTypes[TypeWaveStarted] = decision(func() Payload { return new(WaveStarted) })
	payloadTypes[TypeDeviceTargeted] = payloadSpec{1, true, false, func() Payload { return new(DeviceTargeted) }}
	payloadTypes[TypeWavePassed] = decision(func() Payload { return new(WavePassed) })
	payloadTypes[TypeWaveFailed] = decision(func() Payload { return new(WaveFailed) })
	payloadTypes[TypeRolloutPaused] = decision(func() Payload { return new(RolloutPaused) })
	payloadTypes[TypeRolloutResumed] = decision(func() Payload { return new(RolloutResumed) })
	payloadTypes[TypeRolloutAborted] = decision(func() Payload { return new(RolloutAborted) })
	payloadTypes[TypeRolloutRolledBack] = decision(func() Payload { return new(RolloutRolledBack) })
	payloadTypes[TypeRolloutSucceeded] = decision(func() Payload { return new(RolloutSucceeded) })
	payloadTypes[TypeRolloutSuperseded] = decision(func() Payload { return new(RolloutSuperseded) })
}
