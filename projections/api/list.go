package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Lists page. A page holds at most Limit devices (DefaultLimit when not
// asked, at most MaxLimit), in device id order, and as many as fit in the
// reply (see DevicePage); Next is the cursor of the following page: pass it
// back as After. A device added while a client pages through the fleet is
// listed if its id sorts after the cursor; nothing is listed twice.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	maxQuery     = 128
)

// ErrTooLarge: one item of a reply (a device, a drift history) is larger
// than the reply may carry. The error says what and what to do.
var ErrTooLarge = errors.New("reply too large")

// ListOptions select a page of devices.
type ListOptions struct {
	After  string // cursor: list devices whose id sorts after this one ("" from the start)
	Limit  int    // at most this many (0: DefaultLimit)
	Query  string // keep devices whose id, or one of whose labels as key=value, contains this (case-insensitive)
	Status string // keep devices that are: ready, notready, progressing, degraded, stale ("" all)
	// Selector keeps devices whose labels (agent's and control plane's
	// merged) match this label selector (projections.SelectorRule).
	Selector string

	sel projections.Selector // Selector, parsed by check
}

var statuses = []string{"ready", "notready", "progressing", "degraded", "stale"}

// check validates o and fills in the default limit.
func (o *ListOptions) check() error {
	if o.After != "" {
		if err := events.CheckID("after", o.After); err != nil {
			return err
		}
	}
	switch {
	case o.Limit == 0:
		o.Limit = DefaultLimit
	case o.Limit < 0 || o.Limit > MaxLimit:
		return fmt.Errorf("%w: limit %d: must be 1 to %d", events.ErrInvalid, o.Limit, MaxLimit)
	}
	if len(o.Query) > maxQuery {
		return fmt.Errorf("%w: query: at most %d characters, got %d", events.ErrInvalid, maxQuery, len(o.Query))
	}
	o.Query = strings.ToLower(o.Query)
	sel, err := projections.ParseSelector(o.Selector)
	if err != nil {
		return err
	}
	o.sel = sel
	if o.Status != "" && !contains(statuses, o.Status) {
		return fmt.Errorf("%w: status %q: must be one of %s", events.ErrInvalid, o.Status, strings.Join(statuses, ", "))
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// listOptionsFromURL reads ?after=&limit=&q=&status=&selector=.
func listOptionsFromURL(v url.Values) (ListOptions, error) {
	o := ListOptions{After: v.Get("after"), Query: v.Get("q"), Status: v.Get("status"), Selector: v.Get("selector")}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return o, fmt.Errorf("%w: limit %q: must be 1 to %d", events.ErrInvalid, s, MaxLimit)
		}
		o.Limit = n
	}
	return o, o.check()
}

// DevicePage is a page of whole devices (the device JSON shape).
type DevicePage struct {
	Devices []projections.Device `json:"devices"`
	Next    string               `json:"next,omitempty"` // cursor of the next page; empty on the last
	Total   int                  `json:"total"`          // devices matching the query, on every page
	// Missing names the partitions of a partitioned read side that did
	// not answer: their devices are not on the page (client_partition.go).
	Missing []string `json:"missingPartitions,omitempty"`
}

// DeviceSummary is what the fleet overview shows of a device: its
// conditions and counts, never its manifest or resources. Its size does
// not grow with the device's resources.
type DeviceSummary struct {
	Device             string                  `json:"device"`
	Labels             map[string]string       `json:"labels,omitempty"`
	Generation         int64                   `json:"generation"`
	ObservedGeneration int64                   `json:"observedGeneration"`
	Conditions         []projections.Condition `json:"conditions"`
	LastSeen           *time.Time              `json:"lastSeen"`
	Resources          int                     `json:"resources"`
	States             map[string]int          `json:"states"` // resources by state
}

// FleetTotals count the whole fleet, whatever the page and query.
type FleetTotals struct {
	Devices  int            `json:"devices"`
	Ready    int            `json:"ready"`
	Degraded int            `json:"degraded"`
	Stale    int            `json:"stale"`
	States   map[string]int `json:"states"` // resources by state
}

// SummaryPage is a page of device summaries with the fleet's totals.
type SummaryPage struct {
	Devices []DeviceSummary `json:"devices"`
	Next    string          `json:"next,omitempty"`
	Total   int             `json:"total"`
	Fleet   FleetTotals     `json:"fleet"`
	Missing []string        `json:"missingPartitions,omitempty"` // as DevicePage's
}

// maxMessage bounds a condition message in a summary (a Degraded message
// lists failed resources).
const maxMessage = 200

func summarize(d projections.Device) DeviceSummary {
	s := DeviceSummary{Device: d.Device, Labels: d.Labels, Generation: d.Generation, ObservedGeneration: d.ObservedGeneration,
		LastSeen: d.LastSeen, Resources: len(d.Resources), States: map[string]int{}}
	for _, c := range d.Conditions {
		if len(c.Message) > maxMessage {
			c.Message = c.Message[:maxMessage] + "…"
		}
		s.Conditions = append(s.Conditions, c)
	}
	for _, r := range d.Resources {
		s.States[r.State]++
	}
	return s
}

func condStatus(cs []projections.Condition, t string) string {
	for _, c := range cs {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func (o ListOptions) match(s DeviceSummary) bool {
	if !o.sel.Matches(s.Labels) {
		return false
	}
	switch o.Status {
	case "ready":
		if condStatus(s.Conditions, projections.CondReady) != projections.True {
			return false
		}
	case "notready":
		if condStatus(s.Conditions, projections.CondReady) == projections.True {
			return false
		}
	case "progressing":
		if condStatus(s.Conditions, projections.CondProgressing) != projections.True {
			return false
		}
	case "degraded":
		if condStatus(s.Conditions, projections.CondDegraded) != projections.True {
			return false
		}
	case "stale":
		if condStatus(s.Conditions, projections.CondStale) != projections.True {
			return false
		}
	}
	if o.Query == "" || strings.Contains(strings.ToLower(s.Device), o.Query) {
		return true
	}
	for k, v := range s.Labels {
		if strings.Contains(strings.ToLower(k+"="+v), o.Query) {
			return true
		}
	}
	return false
}

// summary returns the device's summary with its Stale condition, from the
// cache (filled here, emptied for the devices each batch changes).
func (a *Server) summary(id string) (DeviceSummary, bool) {
	a.sumMu.Lock()
	s, ok := a.sums[id]
	gen := a.sumGen
	a.sumMu.Unlock()
	if !ok {
		d, found := a.svc.Device(id)
		if !found {
			return DeviceSummary{}, false
		}
		s = summarize(d)
		a.sumMu.Lock()
		if a.sumGen == gen { // no batch changed the models meanwhile: the summary is current
			a.sums[id] = s
		}
		a.sumMu.Unlock()
	}
	s.Conditions = a.withStale(projections.Device{Device: id, Conditions: s.Conditions}).Conditions
	return s, true
}

// invalidate drops the cached summaries of devices a batch changed.
func (a *Server) invalidate(ids []string) {
	a.sumMu.Lock()
	a.sumGen++
	for _, id := range ids {
		delete(a.sums, id)
	}
	a.sumMu.Unlock()
}

// scan walks the fleet in id order for a page: every device counts in the
// totals, those matching o count in total, and those after the cursor go
// to take until it says the page is full. It returns the cursor of the
// next page ("" if none matched after the page).
func (a *Server) scan(o ListOptions, totals *FleetTotals, take func(DeviceSummary) (full bool, err error)) (next string, total int, err error) {
	full := false
	last := ""
	// take says full only once it holds a device, so last is set then
	for _, id := range a.svc.DeviceIDs() {
		s, ok := a.summary(id)
		if !ok {
			continue
		}
		if totals != nil {
			totals.Devices++
			if condStatus(s.Conditions, projections.CondReady) == projections.True {
				totals.Ready++
			}
			if condStatus(s.Conditions, projections.CondDegraded) == projections.True {
				totals.Degraded++
			}
			if condStatus(s.Conditions, projections.CondStale) == projections.True {
				totals.Stale++
			}
			for st, n := range s.States {
				totals.States[st] += n
			}
		}
		if !o.match(s) {
			continue
		}
		total++
		if id <= o.After || full {
			continue
		}
		f, err := take(s)
		if err != nil {
			return "", 0, err
		}
		if f { // s did not fit: the next page starts after the last one taken
			full, next = true, last
			continue
		}
		last = id
	}
	return next, total, nil
}

// Summaries returns a page of device summaries and the fleet's totals.
func (a *Server) Summaries(o ListOptions) (SummaryPage, error) {
	if err := o.check(); err != nil {
		return SummaryPage{}, err
	}
	p := SummaryPage{Devices: []DeviceSummary{}, Fleet: FleetTotals{States: map[string]int{}}}
	next, total, err := a.scan(o, &p.Fleet, func(s DeviceSummary) (bool, error) {
		if len(p.Devices) == o.Limit {
			return true, nil
		}
		p.Devices = append(p.Devices, s)
		return false, nil
	})
	p.Next, p.Total = next, total
	return p, err
}

// DevicesPage returns a page of whole devices, at most budget bytes of
// JSON (0: no bound). A device that alone is larger than budget is
// ErrTooLarge, saying which and what to do.
func (a *Server) DevicesPage(o ListOptions, budget int) (DevicePage, error) {
	if err := o.check(); err != nil {
		return DevicePage{}, err
	}
	p := DevicePage{Devices: []projections.Device{}}
	used := 0
	next, total, err := a.scan(o, nil, func(s DeviceSummary) (bool, error) {
		if len(p.Devices) == o.Limit {
			return true, nil
		}
		d, ok := a.Device(s.Device)
		if !ok { // deregistered since
			return false, nil
		}
		if budget > 0 {
			b, err := json.Marshal(d)
			if err != nil {
				return false, err
			}
			if used+len(b)+1 > budget {
				if len(p.Devices) == 0 {
					return false, fmt.Errorf("device %s: its read model is %d bytes, more than one reply can carry (%d bytes): %w; "+
						"read it alone over HTTP (GET /api/devices/%s) or raise the NATS server's max_payload", s.Device, len(b), budget, ErrTooLarge, s.Device)
				}
				return true, nil
			}
			used += len(b) + 1
		}
		p.Devices = append(p.Devices, d)
		return false, nil
	})
	p.Next, p.Total = next, total
	return p, err
}
