package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Event types, the envelope's type field.
const (
	TypeManifestApplied    = "ManifestApplied"
	TypeReconcileAttempted = "ReconcileAttempted"
	TypeStatusChanged      = "StatusChanged"
	TypeDriftDetected      = "DriftDetected"
	TypeDeviceRegistered   = "DeviceRegistered"
	TypeDeviceDeregistered = "DeviceDeregistered"
	TypeManifestRejected   = "ManifestRejected"
	TypeClockSkewDetected  = "ClockSkewDetected"
)

// Payload is the typed data of one event type.
type Payload interface {
	EventType() string
	SchemaVersion() int
}

type payloadSpec struct {
	schema      int  // newest schema this build reads
	perResource bool // the envelope names a resource
	noDevice    bool // the envelope names no device (a rollout's decisions)
	new         func() Payload
}

var payloadTypes = map[string]payloadSpec{
	TypeManifestApplied:    {1, false, false, func() Payload { return new(ManifestApplied) }},
	TypeReconcileAttempted: {1, true, false, func() Payload { return new(ReconcileAttempted) }},
	TypeStatusChanged:      {1, true, false, func() Payload { return new(StatusChanged) }},
	TypeDriftDetected:      {1, true, false, func() Payload { return new(DriftDetected) }},
	TypeDeviceRegistered:   {1, false, false, func() Payload { return new(DeviceRegistered) }},
	TypeDeviceDeregistered: {1, false, false, func() Payload { return new(DeviceDeregistered) }},
	TypeManifestRejected:   {1, false, false, func() Payload { return new(ManifestRejected) }},
	TypeClockSkewDetected:  {1, false, false, func() Payload { return new(ClockSkewDetected) }},
}

// Types lists every event type.
func Types() []string {
	return append([]string{TypeManifestApplied, TypeReconcileAttempted, TypeStatusChanged, TypeDriftDetected,
		TypeDeviceRegistered, TypeDeviceDeregistered, TypeManifestRejected, TypeClockSkewDetected, TypeDeviceLabeled}, RolloutTypes()...)
}

// Payload decodes Data as the payload of e.Type. The result is a pointer to
// one of the payload structs below.
func (e Event) Payload() (Payload, error) {
	spec, ok := payloadTypes[e.Type]
	if !ok {
		return nil, fmt.Errorf("%w: event %s type %q: not an event type fleet knows", ErrInvalid, e.ID, e.Type)
	}
	p, fast := fastPayload(e.Type, e.Data)
	if !fast {
		p = spec.new()
		dec := json.NewDecoder(bytes.NewReader(e.Data))
		if err := dec.Decode(p); err != nil {
			return nil, fmt.Errorf("%w: event %s data: not a %s payload: %v", ErrInvalid, e.ID, e.Type, err)
		}
	}
	if c, ok := p.(interface{ check() error }); ok {
		if err := c.check(); err != nil {
			return nil, fmt.Errorf("%w: event %s data: %v", ErrInvalid, e.ID, err)
		}
	}
	return p, nil
}

// ManifestApplied: the control plane set a device's desired state. The
// envelope's generation is the manifest's generation.
type ManifestApplied struct {
	Manifest  Manifest `json:"manifest"`
	Digest    string   `json:"digest"`              // sha256 of the manifest's canonical JSON
	Signature string   `json:"signature,omitempty"` // base64 ed25519 signature of Digest's bytes, if signed
	KeyID     string   `json:"keyId,omitempty"`     // which key signed it
}

// Outcomes of a reconcile attempt.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
)

// ReconcileAttempted: the agent tried once to converge a resource.
type ReconcileAttempted struct {
	Kind       string        `json:"kind"`
	Attempt    int           `json:"attempt"` // 1 for the first attempt of a generation
	Trigger    string        `json:"trigger,omitempty"`
	Duration   time.Duration `json:"durationNs"`
	Outcome    string        `json:"outcome"`
	Error      string        `json:"error,omitempty"`
	Changed    bool          `json:"changed"`          // the attempt changed something on the device
	Output     string        `json:"output,omitempty"` // bounded output (exec)
	ExitCode   *int          `json:"exitCode,omitempty"`
	SpecDigest string        `json:"specDigest,omitempty"`
}

func (p *ReconcileAttempted) check() error {
	if p.Outcome != OutcomeSucceeded && p.Outcome != OutcomeFailed {
		return fmt.Errorf("outcome %q: must be %s or %s", p.Outcome, OutcomeSucceeded, OutcomeFailed)
	}
	return nil
}

// StatusChanged: a resource moved in its lifecycle (see package fsm).
type StatusChanged struct {
	Kind       string     `json:"kind"`
	From       string     `json:"from"`
	To         string     `json:"to"`
	Trigger    string     `json:"trigger"`
	Reason     string     `json:"reason,omitempty"` // e.g. UnknownKind, PathEscapesRoot, ExecNotAllowed
	Error      string     `json:"error,omitempty"`
	Attempts   int        `json:"attempts,omitempty"`   // attempts so far for this generation
	RetryAfter *time.Time `json:"retryAfter,omitempty"` // with To=Failed: when the next attempt may start
}

func (p *StatusChanged) check() error {
	switch p.To {
	case "Pending", "Reconciling", "Ready", "Failed", "Removed":
		return nil
	}
	return fmt.Errorf("to %q: must be Pending, Reconciling, Ready, Failed or Removed", p.To)
}

// Drift policies of a resource.
const (
	DriftCorrect = "correct" // the default: report, then converge again
	DriftReport  = "report"  // report and leave alone
)

// Difference is one field that differs between desired and observed.
type Difference struct {
	Field    string `json:"field"`
	Expected string `json:"expected"`
	Observed string `json:"observed"`
}

// DriftDetected: a Ready resource no longer matched its spec.
type DriftDetected struct {
	Kind        string       `json:"kind"`
	Differences []Difference `json:"differences"`
	Policy      string       `json:"policy"`           // correct or report
	Source      string       `json:"source,omitempty"` // interval or notify
}

// DeviceRegistered: an agent started on a device for the first time (or with new labels or version).
type DeviceRegistered struct {
	Labels       map[string]string `json:"labels,omitempty"`
	AgentVersion string            `json:"agentVersion"`
	Kinds        []string          `json:"kinds"` // resource kinds this agent can reconcile
	ExecAllowed  bool              `json:"execAllowed"`
}

// DeviceDeregistered: the device left the fleet.
type DeviceDeregistered struct {
	Reason string `json:"reason,omitempty"`
}

// ManifestRejected: a manifest was refused (bad signature, undecodable); the
// agent keeps its last good one.
type ManifestRejected struct {
	Reason         string `json:"reason"`
	Generation     int64  `json:"rejectedGeneration"`
	ManifestSeq    uint64 `json:"manifestSeq,omitempty"`
	KeyID          string `json:"keyId,omitempty"`
	KeptGeneration int64  `json:"keptGeneration"`
}

// ClockSkewDetected: the agent measured its wall clock against the
// server's time (the stream's own time) and found it off by more than its
// tolerance, or found its last event time ahead of the server's (a clock
// that ran ahead and was persisted), or found it back in line after a
// correction. From this event on the writer stamps the corrected time
// (wall clock minus Offset when Corrected): if its stamps were ahead, At runs
// back here (RanBack), and the writer's order stays that of wseq.
type ClockSkewDetected struct {
	Offset     time.Duration `json:"offsetNs"`    // wall clock minus server time, as measured
	Tolerance  time.Duration `json:"toleranceNs"` // how far off counts as skew
	ServerTime time.Time     `json:"serverTime"`  // the server's time of the measurement
	LastStamp  time.Time     `json:"lastStamp"`   // the writer's last event time before this one
	Corrected  bool          `json:"corrected"`   // stamps are now wall clock minus Offset
	RanBack    bool          `json:"ranBack"`     // this event's time is before LastStamp: the stamps were ahead
	Source     string        `json:"source"`      // how the server's time was read: stream-info
}

func (p *ClockSkewDetected) check() error {
	if p.ServerTime.IsZero() {
		return fmt.Errorf("serverTime: must be set")
	}
	if p.Tolerance < 0 {
		return fmt.Errorf("toleranceNs %d: must not be negative", p.Tolerance)
	}
	return nil
}

func (ManifestApplied) EventType() string    { return TypeManifestApplied }
func (ReconcileAttempted) EventType() string { return TypeReconcileAttempted }
func (StatusChanged) EventType() string      { return TypeStatusChanged }
func (DriftDetected) EventType() string      { return TypeDriftDetected }
func (DeviceRegistered) EventType() string   { return TypeDeviceRegistered }
func (DeviceDeregistered) EventType() string { return TypeDeviceDeregistered }
func (ManifestRejected) EventType() string   { return TypeManifestRejected }
func (ClockSkewDetected) EventType() string  { return TypeClockSkewDetected }

func (ManifestApplied) SchemaVersion() int    { return 1 }
func (ReconcileAttempted) SchemaVersion() int { return 1 }
func (StatusChanged) SchemaVersion() int      { return 1 }
func (DriftDetected) SchemaVersion() int      { return 1 }
func (DeviceRegistered) SchemaVersion() int   { return 1 }
func (DeviceDeregistered) SchemaVersion() int { return 1 }
func (ManifestRejected) SchemaVersion() int   { return 1 }
func (ClockSkewDetected) SchemaVersion() int  { return 1 }
