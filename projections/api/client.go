package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Client asks the micro service over NATS.
type Client struct {
	nc      *nats.Conn
	Timeout time.Duration
	prefix  string // one partition's endpoints (ForPartition); empty: Prefix
	parts   int    // > 1: a partitioned read side, merged (client_partition.go)
	missing *missingParts
}

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc, Timeout: 5 * time.Second} }

// call sends req to an endpoint and decodes the answer into out. Service
// errors come back as errors wrapping events.ErrNotFound (404) or
// events.ErrInvalid (400).
func (c *Client) call(ctx context.Context, ep string, req Request, out any) error {
	if c.parts > 1 {
		return c.callPartitioned(ctx, ep, req, out)
	}
	prefix := c.prefix
	if prefix == "" {
		prefix = Prefix
	}
	return c.callAt(ctx, prefix, ep, req, out)
}

// callAt is call on the endpoints under prefix.
func (c *Client) callAt(ctx context.Context, prefix, ep string, req Request, out any) error {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, prefix+"."+ep, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return unavailable{fmt.Sprintf("no projection service answers on %s (is 'fleet server' or 'fleet project' running?)", prefix+"."+ep), err}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return unavailable{fmt.Sprintf("the projection service did not answer on %s within %s (is it overloaded or still starting? 'fleet project status' shows its lag; retry, or raise the timeout)",
				prefix+"."+ep, c.Timeout), err}
		}
		return unavailable{fmt.Sprintf("projection service on %s: %v", prefix+"."+ep, err), err}
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		desc := m.Header.Get(micro.ErrorHeader)
		switch code {
		case "404":
			return fmt.Errorf("%s: %w", strings.TrimSuffix(desc, ": "+events.ErrNotFound.Error()), events.ErrNotFound)
		case "400":
			return fmt.Errorf("%s: %w", strings.TrimPrefix(desc, events.ErrInvalid.Error()+": "), events.ErrInvalid)
		case "413":
			return tooLarge(desc)
		}
		return fmt.Errorf("projection service: %s (%s)", desc, code)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%s: answer: %w", ep, err)
	}
	return nil
}

// unavailable is a service that did not answer: it is events.ErrUnavailable
// for errors.Is, and says what happened in its own words (not "log
// unavailable": the log may be fine).
type unavailable struct {
	msg string
	err error
}

func (u unavailable) Error() string   { return u.msg }
func (u unavailable) Unwrap() []error { return []error{events.ErrUnavailable, u.err} }

// tooLargeErr carries the service's own words for ErrTooLarge.
type tooLargeErr struct{ msg string }

func (e tooLargeErr) Error() string { return e.msg }
func (e tooLargeErr) Unwrap() error { return ErrTooLarge }

func tooLarge(desc string) error { return tooLargeErr{desc} }

// DevicesPage returns one page of devices (see ListOptions; Limit 0 is
// DefaultLimit). Pass its Next as After for the next page.
func (c *Client) DevicesPage(ctx context.Context, o ListOptions) (DevicePage, error) {
	var out DevicePage
	return out, c.call(ctx, EpDevices, Request{After: o.After, Limit: o.Limit, Query: o.Query, Status: o.Status, Selector: o.Selector}, &out)
}

// Summaries returns one page of device summaries and the fleet's totals.
func (c *Client) Summaries(ctx context.Context, o ListOptions) (SummaryPage, error) {
	var out SummaryPage
	return out, c.call(ctx, EpSummaries, Request{After: o.After, Limit: o.Limit, Query: o.Query, Status: o.Status, Selector: o.Selector}, &out)
}

// Devices lists every device, page by page (each page one request of at
// most MaxLimit devices and one NATS payload), sorted by id.
func (c *Client) Devices(ctx context.Context) ([]projections.Device, error) {
	return c.EachDevice(ctx, ListOptions{Limit: MaxLimit}, 0)
}

// EachDevice lists the devices o selects, from o.After on, page by page,
// stopping after max of them (0: all).
func (c *Client) EachDevice(ctx context.Context, o ListOptions, max int) ([]projections.Device, error) {
	out := []projections.Device{}
	for {
		if max > 0 && (o.Limit == 0 || o.Limit > max-len(out)) {
			o.Limit = max - len(out)
		}
		p, err := c.DevicesPage(ctx, o)
		if err != nil {
			return out, err
		}
		out = append(out, p.Devices...)
		if p.Next == "" || (max > 0 && len(out) >= max) {
			return out, nil
		}
		if p.Next <= o.After { // a service that does not move on: never loop
			return out, fmt.Errorf("projection service: page after %q came back with cursor %q", o.After, p.Next)
		}
		o.After = p.Next
	}
}

// EachSummary is EachDevice for summaries; it returns the fleet's totals
// of the last page too.
func (c *Client) EachSummary(ctx context.Context, o ListOptions, max int) ([]DeviceSummary, FleetTotals, int, error) {
	out := []DeviceSummary{}
	for {
		if max > 0 && (o.Limit == 0 || o.Limit > max-len(out)) {
			o.Limit = max - len(out)
		}
		p, err := c.Summaries(ctx, o)
		if err != nil {
			return out, FleetTotals{}, 0, err
		}
		out = append(out, p.Devices...)
		if p.Next == "" || (max > 0 && len(out) >= max) {
			return out, p.Fleet, p.Total, nil
		}
		if p.Next <= o.After {
			return out, p.Fleet, p.Total, fmt.Errorf("projection service: page after %q came back with cursor %q", o.After, p.Next)
		}
		o.After = p.Next
	}
}

// Device returns one device.
func (c *Client) Device(ctx context.Context, id string) (projections.Device, error) {
	var out projections.Device
	return out, c.call(ctx, EpDevice, Request{Device: id}, &out)
}

// Drift returns one device's drift history, or every device's for "".
func (c *Client) Drift(ctx context.Context, device string) ([]projections.ResourceDrift, error) {
	var out []projections.ResourceDrift
	return out, c.call(ctx, EpDrift, Request{Device: device}, &out)
}

// Explain explains one resource.
func (c *Client) Explain(ctx context.Context, device, resource string) (projections.Explanation, error) {
	var out projections.Explanation
	return out, c.call(ctx, EpExplain, Request{Device: device, Resource: resource}, &out)
}

// Status returns the service's counters and lag.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.call(ctx, EpStatus, Request{}, &out)
}

// Rebuild asks the service to rebuild its read models; follow with Status.
func (c *Client) Rebuild(ctx context.Context) (Status, error) {
	var out Status
	return out, c.call(ctx, EpRebuild, Request{}, &out)
}
