package projections

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpoint returns the last stream sequence applied.
func (s *Service) Checkpoint() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.m == nil {
		return 0
	}
	return s.m.checkpoint
}

// Lag is the stream's last sequence minus the checkpoint.
func (s *Service) Lag() uint64 {
	cp, last := s.Checkpoint(), s.streamLast.Load()
	if last < cp {
		return 0
	}
	return last - cp
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	st := Stats{Checkpoint: s.Checkpoint(), StreamLast: s.streamLast.Load(), Applied: s.applied.Load(),
		Skipped: s.skipped.Load(), Forged: s.forged.Load(), Batches: s.batches.Load(), FoldSecs: time.Duration(s.foldNanos.Load()).Seconds(),
		Rebuilding: s.rebuilding.Load(), RebuildDone: s.rebuildDone.Load(), RebuildTotal: s.rebuildTotal.Load(),
		Failures: s.fails.Total(), LastFailure: s.fails.Cause()}
	if st.StreamLast > st.Checkpoint {
		st.Lag = st.StreamLast - st.Checkpoint
	} else {
		st.StreamLast = st.Checkpoint
	}
	Query(s, func(f *Fleet) { // counted, not copied: Stats is asked for by every open stream
		for _, d := range f.devices {
			if !d.Deregistered {
				st.Devices++
			}
		}
	})
	return st
}

// Stalled returns why the read models are stuck, or "" if they are not:
// the stream has events past the checkpoint (as the consumer or the log
// check last saw it) and the checkpoint has not moved for at least after.
func (s *Service) Stalled(after time.Duration) string {
	cp, last := s.Checkpoint(), s.streamLast.Load()
	since := time.Since(time.Unix(0, s.advancedAt.Load()))
	if last <= cp || since < after {
		return ""
	}
	why := fmt.Sprintf("the read models have not advanced for %s (checkpoint %d) while the stream has reached sequence %d",
		since.Round(time.Second), cp, last)
	if c := s.fails.Cause(); c != "" {
		why += "; the consumer's last failure: " + c
	}
	return why
}

// Device returns one device's read model.
func (s *Service) Device(id string) (d Device, ok bool) {
	Query(s, func(f *Fleet) { d, ok = f.Device(id) })
	return d, ok
}

// DeviceIDs returns the id of every device the read model knows, sorted
// (deregistered ones too: Device says false for them). It copies no device,
// so listing a page of a large fleet costs the page, not the fleet.
func (s *Service) DeviceIDs() (ids []string) {
	Query(s, func(f *Fleet) { ids = f.DeviceIDs() })
	return ids
}

// Devices returns every device, sorted by id.
func (s *Service) Devices() (ds []Device) {
	Query(s, func(f *Fleet) { ds = f.Devices() })
	return ds
}

// Drift returns a device's drift history, or every device's if id is "".
func (s *Service) Drift(id string) (out []ResourceDrift) {
	Query(s, func(h *Drift) {
		if id == "" {
			out = h.All()
		} else {
			out = h.Device(id)
		}
	})
	return out
}

// Explain explains one resource.
func (s *Service) Explain(device, resource string) (x Explanation, ok bool) {
	Query(s, func(f *Fleet) { x, ok = f.Explain(device, resource) })
	return x, ok
}

// Dump returns every key and value of the active store (read models,
// checkpoint, skipped messages), for byte-equal comparisons.
func (s *Service) Dump() (map[string]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return dump(s.m.db)
}

func dump(db *pebble.DB) (map[string]string, error) {
	it, err := db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	out := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		out[string(it.Key())] = string(it.Value())
	}
	return out, it.Error()
}
