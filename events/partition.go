package events

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// A partitioned read side (fleet project --partition I/N) gives each
// device to one of N projection workers, chosen as nats-server's subject
// mapping function {{partition(N,1)}} chooses on the device token of fleet.*.>:
// FNV-1a (32 bit) of the device id, modulo N. So an operator can map the
// same partitions in the server's config (a subject mapping, or a stream
// source with that transform), and any client computes a device's owner
// itself, without asking anyone.

// Partition is worker I of N (0 <= I < N).
type Partition struct{ I, N int }

// ParsePartition reads "I/N" (such as 0/2): N from 1 to MaxPartitions,
// I from 0 to N-1.
func ParsePartition(s string) (Partition, error) {
	is, ns, ok := strings.Cut(s, "/")
	i, ierr := strconv.Atoi(is)
	n, nerr := strconv.Atoi(ns)
	if !ok || ierr != nil || nerr != nil {
		return Partition{}, fmt.Errorf("%w: partition %q: must be I/N, such as 0/2 (worker I of N, counting from 0)", ErrInvalid, s)
	}
	p := Partition{I: i, N: n}
	return p, p.Check()
}

// MaxPartitions bounds N.
const MaxPartitions = 1024

// Check says what is wrong with p, naming the rule.
func (p Partition) Check() error {
	if p.N < 1 || p.N > MaxPartitions {
		return fmt.Errorf("%w: partition %d/%d: N must be from 1 to %d", ErrInvalid, p.I, p.N, MaxPartitions)
	}
	if p.I < 0 || p.I >= p.N {
		return fmt.Errorf("%w: partition %d/%d: I must be from 0 to N-1 (%d)", ErrInvalid, p.I, p.N, p.N-1)
	}
	return nil
}

func (p Partition) String() string { return fmt.Sprintf("%d/%d", p.I, p.N) }

// PartitionOf is the partition of n that device belongs to.
func PartitionOf(device string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(device))
	return int(h.Sum32() % uint32(n))
}

// Owns reports whether device is p's.
func (p Partition) Owns(device string) bool { return PartitionOf(device, p.N) == p.I }

// OwnsSubject reports whether the event on subject (fleet.<device>.…) is
// p's. A subject with no device token is partition 0's, so that exactly one
// worker sees it.
func (p Partition) OwnsSubject(subject string) bool {
	rest, ok := strings.CutPrefix(subject, Prefix+".")
	if !ok {
		return p.I == 0
	}
	dev, _, _ := strings.Cut(rest, ".")
	return p.Owns(dev)
}

// PartitionMapping is the nats-server subject mapping that puts the
// partition of each FLEET subject in front of it (for an operator who
// wants the server to route or source by partition): source fleet.*.>,
// destination part.{{partition(N,1)}}.fleet.{{wildcard(1)}}.>.
func PartitionMapping(n int) (src, dest string) {
	return Prefix + ".*.>", fmt.Sprintf("part.{{partition(%d,1)}}.%s.{{wildcard(1)}}.>", n, Prefix)
}
