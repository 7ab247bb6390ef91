package projections

import (
	"slices"

	"github.com/fleet-dev/fleet/events"
)

// A device's labels come from two writers: its agent (DeviceRegistered,
// fleet agent --label) and the control plane (DeviceLabeled, fleet label).
// The device read model shows them merged, and the control plane wins: a
// key it set shows its value whatever the agent reports (also after the
// agent registers again with another value), and a key it removed is
// hidden, the agent's too, until it sets the key again. Removing a key the
// control plane never set hides the agent's label: that is how an operator
// takes a device out of a selector without touching the device.

// applyLabels folds a DeviceLabeled in. fleet label writes them
// compare-and-set on the labels subject, so the log holds each once; one
// at or before the last one folded (a redelivery) changes nothing.
func (d *deviceState) applyLabels(seq uint64, p *events.DeviceLabeled) {
	if seq != 0 && seq <= d.LabelsSeq {
		return
	}
	d.LabelsSeq = seq
	for k, v := range p.Set {
		if d.SetLabels == nil {
			d.SetLabels = map[string]string{}
		}
		d.SetLabels[k] = v
		d.RemovedLabels = slices.DeleteFunc(d.RemovedLabels, func(x string) bool { return x == k })
	}
	for _, k := range p.Remove {
		delete(d.SetLabels, k)
		if !slices.Contains(d.RemovedLabels, k) {
			d.RemovedLabels = append(d.RemovedLabels, k)
		}
	}
	slices.Sort(d.RemovedLabels)
	if len(d.SetLabels) == 0 {
		d.SetLabels = nil
	}
	if len(d.RemovedLabels) == 0 {
		d.RemovedLabels = nil
	}
}

// labels returns the merged labels (a new map): the agent's, without the
// keys the control plane removed, with the ones it set.
func (d *deviceState) labels() map[string]string {
	out := maps(d.Labels)
	for _, k := range d.RemovedLabels {
		delete(out, k)
	}
	for k, v := range d.SetLabels {
		out[k] = v
	}
	return out
}
