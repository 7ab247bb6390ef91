package timetravel

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// snapshotDue reports whether the device's fold should be snapshotted now:
// at least every events since the last snapshot, and at least as many bytes
// of event records as that snapshot had. The second rule is what keeps the
// index linear in the log: each snapshot is paid for by the events before it.
func (d *deviceIndex) snapshotDue(every int) bool {
	return len(d.at)-d.snapPos >= every && d.sinceBytes >= d.snapBytes
}

// snapshotAt returns the device's last snapshot at or before position p
// (the fold of its first pos events) and its value (a copy), or pos 0 and
// nil when there is none. Snapshots may lie at any position: their spacing
// depends on their size, and indexes written with another spacing still
// load.
func (x *model) snapshotAt(dev string, p int) (int, []byte, error) {
	if p <= 0 {
		return 0, nil, nil
	}
	lower := posKey(kindSnapshot, dev, 1)
	it, err := x.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: posKey(kindSnapshot, dev, p+1)})
	if err != nil {
		return 0, nil, err
	}
	defer it.Close()
	if !it.Last() {
		return 0, nil, it.Error()
	}
	k := it.Key()
	d, pos, ok := splitKey(k)
	if !ok || d != dev || !bytes.HasPrefix(k, lower[:len(lower)-4]) {
		return 0, nil, fmt.Errorf("device %s: bad snapshot key %q", dev, k)
	}
	return pos, slices.Clone(it.Value()), nil
}
