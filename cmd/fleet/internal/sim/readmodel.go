package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// readModel is how the simulator reads the projection service: over its
// HTTP API when it runs the server itself (no payload limit), else over the
// micro service (whose answers are bounded by the server's max payload).
type readModel interface {
	Devices(ctx context.Context) ([]projections.Device, error)
	Status(ctx context.Context) (api.Status, error)
}

type httpModel struct {
	base func() string // the server's address moves when it restarts
	c    *http.Client
}

func newHTTPModel(base func() string) *httpModel {
	return &httpModel{base: base, c: &http.Client{Timeout: 60 * time.Second}}
}

func (m *httpModel) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base()+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.c.Do(req)
	if err != nil {
		return fmt.Errorf("read model %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("read model %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Devices reads every device, a page at a time.
func (m *httpModel) Devices(ctx context.Context) ([]projections.Device, error) {
	var ds []projections.Device
	after := ""
	for {
		var page api.DevicePage
		if err := m.get(ctx, "/api/devices?limit="+strconv.Itoa(api.MaxLimit)+"&after="+url.QueryEscape(after), &page); err != nil {
			return nil, err
		}
		ds = append(ds, page.Devices...)
		if page.Next == "" {
			return ds, nil
		}
		after = page.Next
	}
}

func (m *httpModel) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	return st, m.get(ctx, "/api/status", &st)
}

// readyAt reports whether d has generation gen in force with every one of
// want resources Ready, and when the last of them became Ready (the agent's
// clock, as the read model records it).
func readyAt(d projections.Device, gen int64, want int) (time.Time, bool) {
	if d.Generation != gen || d.ObservedGeneration != gen || len(d.Resources) != want {
		return time.Time{}, false
	}
	var last time.Time
	for _, r := range d.Resources {
		if r.State != "Ready" {
			return time.Time{}, false
		}
		if r.Since.After(last) {
			last = r.Since
		}
	}
	return last, true
}
