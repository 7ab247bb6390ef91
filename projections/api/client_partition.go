package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// A partitioned read side (fleet project --partition I/N): worker I serves
// its devices under PartitionPrefix(I/N) and says which partition it is in
// its micro service metadata. A client of all of them (Partitioned, or
// NewClientFor when it finds partitions) asks a device's owner for that
// device (events.PartitionOf, computed here, no lookup) and merges the
// lists: every partition's page after the same cursor, merged by id, cut
// where the shortest full page ends. A partition that does not answer is
// named on the merged page (Missing) and its devices are not on it; the
// others answer as usual. A single device of a partition that is down is
// unavailable, saying which partition owns it.

// MetaPartition is the micro service metadata key a worker gives its
// partition in ("I/N").
const MetaPartition = "partition"

// PartitionPrefix is the subject prefix of worker p's endpoints.
func PartitionPrefix(p events.Partition) string {
	return fmt.Sprintf("%s.p%dof%d", Prefix, p.I, p.N)
}

// partitionPrefix is the server's endpoints' prefix and its metadata.
func (a *Server) partitionPrefix() (string, map[string]string) {
	p, ok := a.svc.Partition()
	if !ok {
		return Prefix, nil
	}
	return PartitionPrefix(p), map[string]string{MetaPartition: p.String()}
}

// ForPartition is a client of worker p alone (its status, health, rebuild).
func (c *Client) ForPartition(p events.Partition) *Client {
	return &Client{nc: c.nc, Timeout: c.Timeout, prefix: PartitionPrefix(p)}
}

// Partitioned is a client that merges the n workers of a partitioned read
// side.
func Partitioned(nc *nats.Conn, n int) *Client {
	return &Client{nc: nc, Timeout: 5 * time.Second, parts: n, missing: &missingParts{}}
}

// missingParts are the partitions a merged list lacked.
type missingParts struct {
	mu    sync.Mutex
	parts []string
}

func (m *missingParts) note(down []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range down {
		if !slices.Contains(m.parts, p) {
			m.parts = append(m.parts, p)
		}
	}
}

// Missing lists the partitions that did not answer one of the client's
// merged lists so far (their devices were not on it); none for a client
// of an unpartitioned read side.
func (c *Client) Missing() []string {
	if c.missing == nil {
		return nil
	}
	c.missing.mu.Lock()
	defer c.missing.mu.Unlock()
	return slices.Clone(c.missing.parts)
}

// NewClientFor is NewClient, or Partitioned when the projection services
// that answer are the workers of a partitioned read side (DiscoverPartitions).
func NewClientFor(ctx context.Context, nc *nats.Conn) *Client {
	if n, err := DiscoverPartitions(ctx, nc, 300*time.Millisecond); err == nil && n > 1 {
		return Partitioned(nc, n)
	}
	return NewClient(nc)
}

// DiscoverPartitions asks every running projection service who it is
// (the micro service INFO request) for up to wait (50 ms after the first
// answer), and returns N of the
// partitioned workers among them (0: none are partitioned). Workers that
// disagree on N (N being changed: see the README) give the largest N
// whose workers all answered, else the largest seen.
func DiscoverPartitions(ctx context.Context, nc *nats.Conn, wait time.Duration) (int, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest("$SRV.INFO."+ServiceName, inbox, nil); err != nil {
		return 0, err
	}
	seen := map[int]map[int]bool{}
	deadline := time.Now().Add(wait)
	for {
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			break
		}
		m, err := sub.NextMsg(left)
		if err != nil {
			break
		}
		if first := time.Now().Add(50 * time.Millisecond); first.Before(deadline) {
			deadline = first // the others answer about as fast as the first
		}
		var info struct {
			Metadata map[string]string `json:"metadata"`
		}
		if json.Unmarshal(m.Data, &info) != nil {
			continue
		}
		p, err := events.ParsePartition(info.Metadata[MetaPartition])
		if err != nil {
			continue
		}
		if seen[p.N] == nil {
			seen[p.N] = map[int]bool{}
		}
		seen[p.N][p.I] = true
	}
	best, complete := 0, false
	for _, n := range slices.Sorted(maps.Keys(seen)) {
		full := len(seen[n]) == n
		if full || !complete {
			best, complete = n, full
		}
	}
	return best, nil
}

// callPartitioned is call on a partitioned read side.
func (c *Client) callPartitioned(ctx context.Context, ep string, req Request, out any) error {
	switch ep {
	case EpDevice, EpExplain:
		return c.callOwner(ctx, ep, req, out)
	case EpDrift:
		if req.Device != "" {
			return c.callOwner(ctx, ep, req, out)
		}
		return c.mergeDrift(ctx, req, out)
	case EpDevices:
		return c.mergePages(ctx, ep, req, out)
	case EpSummaries:
		return c.mergePages(ctx, ep, req, out)
	}
	return fmt.Errorf("%w: %s: a partitioned read side answers it per worker: ask each with --partition I/N", events.ErrInvalid, ep)
}

// callOwner asks the partition that owns req.Device.
func (c *Client) callOwner(ctx context.Context, ep string, req Request, out any) error {
	if err := events.CheckID("device", req.Device); err != nil {
		return err
	}
	p := events.Partition{I: events.PartitionOf(req.Device, c.parts), N: c.parts}
	err := c.callAt(ctx, PartitionPrefix(p), ep, req, out)
	if errors.Is(err, events.ErrUnavailable) {
		return unavailable{fmt.Sprintf("partition %s, which owns device %s, did not answer: its devices' answers are unavailable until it is back (the other partitions answer): %v", p, req.Device, err), err}
	}
	return err
}

// fanOut asks every partition at once; answers[i] is nil for a partition
// that did not answer (down names them), and the first other error is
// returned.
func fanOut[T any](ctx context.Context, c *Client, ep string, req Request) (answers []*T, down []string, err error) {
	answers = make([]*T, c.parts)
	errs := make([]error, c.parts)
	var wg sync.WaitGroup
	for i := range c.parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v T
			p := events.Partition{I: i, N: c.parts}
			if errs[i] = c.callAt(ctx, PartitionPrefix(p), ep, req, &v); errs[i] == nil {
				answers[i] = &v
			}
		}()
	}
	wg.Wait()
	var unavail error
	for i, e := range errs {
		switch {
		case e == nil:
		case errors.Is(e, events.ErrUnavailable):
			down = append(down, events.Partition{I: i, N: c.parts}.String())
			unavail = e
		default:
			return nil, nil, e
		}
	}
	if len(down) == c.parts {
		return nil, down, unavail
	}
	if c.missing != nil {
		c.missing.note(down)
	}
	return answers, down, nil
}

// mergeList merges the partitions' pages after one cursor (a nil list: a
// partition that did not answer): sorted by id, cut where the first
// partition that has more ends its page (past it that partition's devices
// are not known yet), and at most limit long. next is the merged page's
// cursor, empty when no partition has more.
func mergeList[T any](lists [][]T, nexts []string, id func(T) string, limit int) (all []T, next string) {
	all = []T{}
	end, more := "", false
	for i, l := range lists {
		all = append(all, l...)
		if nexts[i] != "" && len(l) > 0 {
			if last := id(l[len(l)-1]); end == "" || last < end {
				end, more = last, true
			}
		}
	}
	sort.Slice(all, func(i, j int) bool { return id(all[i]) < id(all[j]) })
	if end != "" {
		all = all[:sort.Search(len(all), func(i int) bool { return id(all[i]) > end })]
	}
	if limit > 0 && len(all) > limit {
		all, more = all[:limit], true
	}
	if more && len(all) > 0 {
		next = id(all[len(all)-1])
	}
	return all, next
}

// mergePages merges every partition's page after the same cursor.
func (c *Client) mergePages(ctx context.Context, ep string, req Request, out any) error {
	switch o := out.(type) {
	case *DevicePage:
		answers, down, err := fanOut[DevicePage](ctx, c, ep, req)
		if err != nil {
			return err
		}
		merged := DevicePage{Missing: down}
		lists, nexts := make([][]projections.Device, len(answers)), make([]string, len(answers))
		for i, a := range answers {
			if a != nil {
				lists[i], nexts[i] = a.Devices, a.Next
				merged.Total += a.Total
			}
		}
		merged.Devices, merged.Next = mergeList(lists, nexts, func(d projections.Device) string { return d.Device }, req.Limit)
		*o = merged
		return nil
	case *SummaryPage:
		answers, down, err := fanOut[SummaryPage](ctx, c, ep, req)
		if err != nil {
			return err
		}
		merged := SummaryPage{Missing: down, Fleet: FleetTotals{States: map[string]int{}}}
		lists, nexts := make([][]DeviceSummary, len(answers)), make([]string, len(answers))
		for i, a := range answers {
			if a == nil {
				continue
			}
			lists[i], nexts[i] = a.Devices, a.Next
			merged.Total += a.Total
			merged.Fleet.Devices += a.Fleet.Devices
			merged.Fleet.Ready += a.Fleet.Ready
			merged.Fleet.Degraded += a.Fleet.Degraded
			merged.Fleet.Stale += a.Fleet.Stale
			for k, v := range a.Fleet.States {
				merged.Fleet.States[k] += v
			}
		}
		merged.Devices, merged.Next = mergeList(lists, nexts, func(d DeviceSummary) string { return d.Device }, req.Limit)
		*o = merged
		return nil
	}
	return fmt.Errorf("%s: cannot merge into %T", ep, out)
}

// mergeDrift is every device's drift history, from every partition.
func (c *Client) mergeDrift(ctx context.Context, req Request, out any) error {
	o, ok := out.(*[]projections.ResourceDrift)
	if !ok {
		return fmt.Errorf("%s: cannot merge into %T", EpDrift, out)
	}
	answers, down, err := fanOut[[]projections.ResourceDrift](ctx, c, EpDrift, req)
	if err != nil {
		return err
	}
	if len(down) > 0 {
		return unavailable{fmt.Sprintf("partitions %v did not answer: the fleet's drift history is incomplete; ask one device's (fleet drift DEVICE) of the others", down), events.ErrUnavailable}
	}
	var merged []projections.ResourceDrift
	for _, a := range answers {
		merged = append(merged, *a...)
	}
	sort.SliceStable(merged, func(i, j int) bool { return merged[i].Device < merged[j].Device })
	*o = merged
	return nil
}
