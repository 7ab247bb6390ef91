package events

import (
	"fmt"
	"sort"
)

// Labels set by the control plane. A device's agent reports its own labels
// in DeviceRegistered (fleet agent --label); an operator adds, changes and
// removes labels with DeviceLabeled (fleet label), on a subject of its own,
// fleet.<device>.labels, that only the control plane (user:NAME) writes:
// lifecycle subjects are the agent's alone.

// TypeDeviceLabeled is the envelope type of DeviceLabeled.
const TypeDeviceLabeled = "DeviceLabeled"

// KindLabels is the subject kind of DeviceLabeled.
const KindLabels = "labels"

// LabelsSubject is where the control plane appends a device's labels.
func LabelsSubject(device string) string {
	return fmt.Sprintf("%s.%s.%s", Prefix, device, KindLabels)
}

// MaxLabelValue bounds a label's value, as the agent's --label does.
const MaxLabelValue = 256

// LabelKeyRule is the rule every label key follows (the id rule).
const LabelKeyRule = IDRule

// CheckLabel returns nil for a valid label key and value, else an error
// naming the key and the rule. The one rule of the agent's --label and of
// fleet label.
func CheckLabel(k, v string) error {
	if !ValidID(k) {
		return fmt.Errorf("%w: label key %q: must be %s", ErrInvalid, k, LabelKeyRule)
	}
	if len(v) > MaxLabelValue {
		return fmt.Errorf("%w: label %s value: must be at most %d bytes", ErrInvalid, k, MaxLabelValue)
	}
	return nil
}

// DeviceLabeled: the control plane set labels on a device (Set) and removed
// others (Remove). Control-plane labels win over the agent's: a key set here
// shows this value whatever the agent reports, and a key removed here is
// hidden, also when the agent reports it, until the control plane sets it
// again. A key is in at most one of Set and Remove.
type DeviceLabeled struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

func (p *DeviceLabeled) check() error {
	if len(p.Set) == 0 && len(p.Remove) == 0 {
		return fmt.Errorf("set, remove: a DeviceLabeled sets or removes at least one label")
	}
	keys := make([]string, 0, len(p.Set))
	for k := range p.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := CheckLabel(k, p.Set[k]); err != nil {
			return err
		}
	}
	for _, k := range p.Remove {
		if err := CheckLabel(k, ""); err != nil {
			return err
		}
		if _, ok := p.Set[k]; ok {
			return fmt.Errorf("label %s: both set and removed: give it once", k)
		}
	}
	return nil
}

func (DeviceLabeled) EventType() string  { return TypeDeviceLabeled }
func (DeviceLabeled) SchemaVersion() int { return 1 }

func init() {
	payloadTypes[TypeDeviceLabeled] = payloadSpec{1, false, false, func() Payload { return new(DeviceLabeled) }}
}
