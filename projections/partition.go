package projections

import "github.com/fleet-dev/fleet/events"

// A partitioned read side: the service as worker I of N folds only the
// events of its own devices (events.Partition: the device id's FNV-1a
// modulo N, as nats-server's {{partition(N,1)}} mapping). It still reads
// the whole stream in order, so its checkpoint is the stream's sequence
// like an unpartitioned service's, and each device's events keep their
// order; another worker's messages are neither decoded nor folded nor
// stored (the fold and the store are the read side's costs: 1/N each).
// The read models of a device are byte for byte what an unpartitioned
// service holds for it.

// WithPartition makes the service worker p of a partitioned read side.
func WithPartition(p events.Partition) Option {
	return func(s *Service) { s.part = &p }
}

// Partition is the service's partition, if it has one (WithPartition).
func (s *Service) Partition() (events.Partition, bool) {
	if s.part == nil {
		return events.Partition{I: 0, N: 1}, false
	}
	return *s.part, true
}

// others reports whether the message on subject belongs to another
// worker's devices: it advances the checkpoint and nothing else.
func (s *Service) others(subject string) bool {
	return s.part != nil && !s.part.OwnsSubject(subject)
}
