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
}

// NewClient returns a client on nc.
func NewClient(nc *nats.Conn) *Client { return &Client{nc: nc, Timeout: 5 * time.Second} }

// call sends req to an endpoint and decodes the answer into out. Service
// errors come back as errors wrapping events.ErrNotFound (404) or
// events.ErrInvalid (400).
func (c *Client) call(ctx context.Context, ep string, req Request, out any) error {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	m, err := c.nc.RequestWithContext(ctx, Prefix+"."+ep, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%w: no projection service answers on %s (is 'fleet server' or 'fleet project' running?)", events.ErrUnavailable, Prefix+"."+ep)
		}
		return fmt.Errorf("%s: %w: %w", ep, events.ErrUnavailable, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		desc := m.Header.Get(micro.ErrorHeader)
		switch code {
		case "404":
			return fmt.Errorf("%s: %w", strings.TrimSuffix(desc, ": "+events.ErrNotFound.Error()), events.ErrNotFound)
		case "400":
			return fmt.Errorf("%s: %w", strings.TrimPrefix(desc, events.ErrInvalid.Error()+": "), events.ErrInvalid)
		}
		return fmt.Errorf("projection service: %s (%s)", desc, code)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%s: answer: %w", ep, err)
	}
	return nil
}

// Devices lists every device.
func (c *Client) Devices(ctx context.Context) ([]projections.Device, error) {
	var out []projections.Device
	return out, c.call(ctx, EpDevices, Request{}, &out)
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
