package events

import "fmt"

// Stream is the one stream that holds the log; every subject under Prefix is
// captured by it, so nothing but events may be published there.
const (
	Stream = "FLEET"
	Prefix = "fleet"
	// AllSubjects is the stream's subject filter.
	AllSubjects = Prefix + ".>"
	// HeartbeatBucket is the KV bucket of agent heartbeats (not history).
	HeartbeatBucket = "fleet_heartbeats"
)

// Subject kinds, the third token of every subject.
const (
	KindManifest  = "manifest"
	KindLifecycle = "lifecycle"
	KindAttempt   = "attempt"
	KindStatus    = "status"
	KindDrift     = "drift"
)

// ManifestSubject is where a device's desired state is appended.
func ManifestSubject(device string) string {
	return fmt.Sprintf("%s.%s.%s", Prefix, device, KindManifest)
}

// LifecycleSubject is where a device's lifecycle events are appended.
func LifecycleSubject(device string) string {
	return fmt.Sprintf("%s.%s.%s", Prefix, device, KindLifecycle)
}

// ResourceSubject is the subject of a per-resource event kind (attempt, status, drift).
func ResourceSubject(device, kind, resource string) string {
	return fmt.Sprintf("%s.%s.%s.%s", Prefix, device, kind, resource)
}

// DeviceFilter matches every event of one device.
func DeviceFilter(device string) string { return fmt.Sprintf("%s.%s.>", Prefix, device) }

// SubjectFor returns the subject an event belongs on, by its type.
func SubjectFor(e Event) (string, error) {
	switch e.Type {
	case TypeManifestApplied:
		return ManifestSubject(e.Device), nil
	case TypeDeviceRegistered, TypeDeviceDeregistered, TypeManifestRejected, TypeClockSkewDetected:
		return LifecycleSubject(e.Device), nil
	case TypeReconcileAttempted:
		return ResourceSubject(e.Device, KindAttempt, e.Resource), nil
	case TypeStatusChanged:
		return ResourceSubject(e.Device, KindStatus, e.Resource), nil
	case TypeDriftDetected:
		return ResourceSubject(e.Device, KindDrift, e.Resource), nil
	case TypeDeviceLabeled:
		return LabelsSubject(e.Device), nil
	case TypeDeviceTargeted:
		return TargetedSubject(e.Device, e.Resource), nil
	}
	if IsRolloutDecision(e.Type) {
		return RolloutSubject(e.Resource), nil
	}
	return "", fmt.Errorf("%w: type %q: not an event type fleet knows", ErrInvalid, e.Type)
}
