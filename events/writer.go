package events

import (
	"errors"
	"fmt"
)

// ErrForged: an event whose actor may not have written it (see CheckWriter).
var ErrForged = errors.New("forged actor")

// actor prefixes
const (
	actorAgent = "agent:"
	actorUser  = "user:"
)

// WrittenByItsWriter reports whether e's actor is one that may write e:
// on a device's manifest subject (ManifestApplied) and labels subject
// (DeviceLabeled), and for a rollout's events (its decisions and
// DeviceTargeted, see rollout.go), the control plane, an actor user:NAME; on every other subject of device X (lifecycle, attempt,
// status, drift: events only the agent writes, DeviceRegistered,
// DeviceDeregistered and ManifestRejected included) exactly agent:X.
// Device credentials can publish only on their own device's agent subjects,
// so an agent event that names another agent or a user as its actor was
// written by something that lied about who it is.
//
// The event's Device stands for its subject's device: events read from the
// log are refused unless they belong on their subject (jsstore.FromRaw).
// Cheap enough for every fold: string comparisons, no allocation.
func WrittenByItsWriter(e Event) bool {
	a := e.Actor
	if controlPlaneWrites(e.Type) {
		return len(a) > len(actorUser) && a[:len(actorUser)] == actorUser
	}
	return len(a) == len(actorAgent)+len(e.Device) && a[:len(actorAgent)] == actorAgent && a[len(actorAgent):] == e.Device
}

// controlPlaneWrites reports whether events of type t are the control
// plane's (user:NAME): manifests, labels, and a rollout's events.
func controlPlaneWrites(t string) bool {
	switch t {
	case TypeManifestApplied, TypeDeviceLabeled, TypeDeviceTargeted,
		TypeRolloutStarted, TypeWaveStarted, TypeWavePassed, TypeWaveFailed, TypeRolloutPaused, TypeRolloutResumed,
		TypeRolloutAborted, TypeRolloutRolledBack, TypeRolloutSucceeded, TypeRolloutSuperseded:
		return true
	}
	return false
}

// ForgedEvent is an event on the log whose actor may not have written it.
// It wraps ErrForged.
type ForgedEvent struct {
	Seq     uint64
	Subject string
	ID      string
	Type    string
	Actor   string // the actor the event claims
	Want    string // who writes events there: agent:<device> or user:NAME
}

func (f *ForgedEvent) Error() string {
	return fmt.Sprintf("sequence %d on %s: forged event %s: %s claims actor %q, but only %s writes there; not folded (who had credentials to publish it? see 'fleet device revoke')",
		f.Seq, f.Subject, f.ID, f.Type, f.Actor, f.Want)
}

func (f *ForgedEvent) Unwrap() error { return ErrForged }

// CheckWriter returns nil if s was written by an actor that may write it
// (WrittenByItsWriter), else a *ForgedEvent naming its sequence, subject and
// claimed actor. The one rule used by the projection service, `fleet replay`
// and its --verify, and time travel: a forged event is reported, never folded.
func CheckWriter(s Stored) error {
	if WrittenByItsWriter(s.Event) {
		return nil
	}
	want := actorAgent + s.Device
	if controlPlaneWrites(s.Type) {
		want = "the control plane (user:NAME)"
	}
	subj := s.Subject
	if subj == "" {
		subj, _ = SubjectFor(s.Event)
	}
	return &ForgedEvent{Seq: s.Seq, Subject: subj, ID: s.ID, Type: s.Type, Actor: s.Actor, Want: want}
}
