package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// bigFleet is fixtures.BigFleet for a test.
func bigFleet(t testing.TB, n, res int) []events.Event {
	evs, err := fixtures.BigFleet(n, res, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// serveFleet is serve with a log of one's own and server options.
func serveFleet(t testing.TB, evs []events.Event, opts ...api.ServerOption) *served {
	t.Helper()
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < len(evs); i += 1000 {
		if err := env.Store.AppendBatch(ctx, evs[i:min(i+1000, len(evs))]); err != nil {
			t.Fatal(err)
		}
	}
	last, _ := env.Store.LastSeq(ctx)
	svc, err := projections.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, env.Store) }()
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	if err := svc.WaitFor(wctx, last); err != nil {
		t.Fatal(err)
	}
	a := api.NewServer(svc, env.Store, time.Minute, opts...)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := a.AddMicro(env.Conn)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		_ = ms.Stop()
		cancel()
		<-done
		svc.Close()
	})
	return &served{env: env, svc: svc, http: hs, evs: evs, last: last}
}

func getBytes(t *testing.T, u string) (int, []byte) {
	t.Helper()
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

// TestFleetLargerThanANATSPayloadListsCompletely: 500 devices of 40
// resources are more than 2 MiB of read model, more than one NATS reply
// (the embedded server's max payload is 2 MiB). 'fleet get devices' asked
// for all of them in one reply and failed with "log unavailable: context
// deadline exceeded"; now the NATS and HTTP lists page, and every device
// comes back, equal to the read model.
func TestFleetLargerThanANATSPayloadListsCompletely(t *testing.T) {
	is := is.New(t)
	s := serveFleet(t, bigFleet(t, 500, 40))
	want := s.svc.Devices()
	whole, err := json.Marshal(want)
	is.NoErr(err)
	t.Logf("read model of %d devices: %d bytes", len(want), len(whole))
	is.Equal(len(want), 500)
	is.True(len(whole) > 2<<20) // more than one NATS payload

	// over NATS, the path of 'fleet get devices -o json'
	ctx := context.Background()
	cl := api.NewClient(s.env.Conn)
	got, err := cl.Devices(ctx)
	is.NoErr(err)
	is.Equal(len(got), 500)
	for i := range got {
		is.Equal(got[i].Device, want[i].Device)
		is.Equal(len(got[i].Resources), 40)
		is.Equal(got[i].Resources, want[i].Resources)
	}
	p, err := cl.DevicesPage(ctx, api.ListOptions{Limit: api.MaxLimit})
	is.NoErr(err)
	is.True(len(p.Devices) < 500) // the first page stopped at the payload, not at the limit
	is.True(p.Next != "")
	is.Equal(p.Total, 500)

	// over HTTP: pages of 100 by default, then pages of 1000
	var ids []string
	after := ""
	pages := 0
	for {
		var page api.DevicePage
		is.Equal(get(t, s.http.URL+"/api/devices?after="+url.QueryEscape(after), &page), 200)
		pages++
		for _, d := range page.Devices {
			ids = append(ids, d.Device)
			is.Equal(len(d.Resources), 40)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	is.Equal(len(ids), 500)
	is.Equal(pages, 5)
	for i, id := range ids {
		is.Equal(id, want[i].Device) // each once, in order
	}

	// filters: by label and by status
	var page api.DevicePage
	is.Equal(get(t, s.http.URL+"/api/devices?q=site%3Dsite-3&limit=1000", &page), 200)
	is.Equal(page.Total, 100)
	is.Equal(len(page.Devices), 100)
	is.Equal(get(t, s.http.URL+"/api/devices?status=degraded", &page), 200)
	is.Equal(page.Total, 0)
	is.Equal(get(t, s.http.URL+"/api/devices?limit=1001", nil), 400)
	is.Equal(get(t, s.http.URL+"/api/devices?after=bad.id", nil), 400)
	is.Equal(get(t, s.http.URL+"/api/devices?status=shiny", nil), 400)
}

// TestOverviewSummaryStaysSmallPerDevice: the dashboard's overview reads
// summaries: conditions and counts, not manifests or resources, so its
// bytes per device do not grow with a device's resources.
func TestOverviewSummaryStaysSmallPerDevice(t *testing.T) {
	is := is.New(t)
	s := serveFleet(t, bigFleet(t, 100, 40))
	code, b := getBytes(t, s.http.URL+"/api/summary?limit=100")
	is.Equal(code, 200)
	var p api.SummaryPage
	is.NoErr(json.Unmarshal(b, &p))
	is.Equal(len(p.Devices), 100)
	is.Equal(p.Fleet.Devices, 100)
	is.Equal(p.Fleet.States["Ready"], 4000)
	is.Equal(p.Devices[0].Resources, 40)
	is.Equal(p.Devices[0].States["Ready"], 40)
	full, _ := json.Marshal(s.svc.Devices())
	perDevice := len(b) / 100
	t.Logf("summary: %d bytes a device; whole device: %d bytes", perDevice, len(full)/100)
	is.True(perDevice < 1024)            // bounded, whatever the resources
	is.True(perDevice*5 < len(full)/100) // a fifth of a whole device at 40 resources

	// a device of 400 resources has the same size of summary
	s2 := serveFleet(t, bigFleet(t, 2, 400))
	code, b2 := getBytes(t, s2.http.URL+"/api/summary")
	is.Equal(code, 200)
	is.True(len(b2)/2 < 1024)
}

// TestTooLargeADeviceSaysWhatAndWhatToDo: a device whose read model is
// larger than a reply can carry is an error naming the device, its size and
// the way out; never "log unavailable", never a timeout. Smaller devices
// page within the bound.
func TestTooLargeADeviceSaysWhatAndWhatToDo(t *testing.T) {
	is := is.New(t)
	evs := bigFleet(t, 6, 10)
	big := bigFleet(t, 1, 300) // pi-0000 with 300 resources...
	for i := range big {
		big[i].Device = "pi-0003x" // ... renamed: it sorts after pi-0003
		if big[i].Actor != "user:ops" {
			big[i].Actor = "agent:pi-0003x"
		}
	}
	s := serveFleet(t, append(evs, big...), api.WithMaxReply(24<<10))
	ctx := context.Background()
	cl := api.NewClient(s.env.Conn)
	p, err := cl.DevicesPage(ctx, api.ListOptions{})
	is.NoErr(err)
	is.Equal(len(p.Devices), 4) // the page ends before the device that does not fit
	is.Equal(p.Next, "pi-0003")
	_, err = cl.Devices(ctx)
	is.True(errors.Is(err, api.ErrTooLarge))
	msg := err.Error()
	t.Log(msg)
	is.True(strings.Contains(msg, "device pi-0003x"))
	is.True(strings.Contains(msg, "GET /api/devices/pi-0003x"))
	is.True(!strings.Contains(msg, "unavailable") && !strings.Contains(msg, "deadline"))
	// one device alone: the same answer
	_, err = cl.Device(ctx, "pi-0003x")
	is.True(errors.Is(err, api.ErrTooLarge))
	// over HTTP it is served
	var d projections.Device
	is.Equal(get(t, s.http.URL+"/api/devices/pi-0003x", &d), 200)
	is.Equal(len(d.Resources), 300)
}

// sseClient reads one live stream and counts what it gets.
type sseClient struct {
	mu      sync.Mutex
	names   map[string]int
	bytes   int
	largest int
	devices map[string]bool // devices named by change notices
	all     int
}

func (c *sseClient) read(t *testing.T, ctx context.Context, u string, ready chan<- struct{}) {
	req, _ := http.NewRequestWithContext(ctx, "GET", u+"/api/stream", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		close(ready)
		return
	}
	defer res.Body.Close()
	r := bufio.NewReader(res.Body)
	var name string
	first := true
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		c.mu.Lock()
		c.bytes += len(line)
		c.largest = max(c.largest, len(line))
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
			c.names[name]++
		case strings.HasPrefix(line, "data: ") && name == "changed":
			var n struct {
				Devices []string `json:"devices"`
				All     bool     `json:"all"`
			}
			if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &n) == nil {
				for _, d := range n.Devices {
					c.devices[d] = true
				}
				if n.All {
					c.all++
				}
			}
		case line == "" && first && name == "status":
			first = false
			close(ready)
		}
		c.mu.Unlock()
	}
}

// TestConcurrentDashboardStreamsGetNoticesNotDevices: 50 live streams on a
// fleet of 200 devices of 40 resources. A stream used to send every
// device's whole JSON on connect and on every change, to every client;
// now each gets the status and small notices naming the devices that
// changed, and fetches what it shows.
func TestConcurrentDashboardStreamsGetNoticesNotDevices(t *testing.T) {
	is := is.New(t)
	s := serveFleet(t, bigFleet(t, 200, 40))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 50
	clients := make([]*sseClient, n)
	var wg sync.WaitGroup
	for i := range clients {
		c := &sseClient{names: map[string]int{}, devices: map[string]bool{}}
		clients[i] = c
		ready := make(chan struct{})
		wg.Add(1)
		go func() { defer wg.Done(); c.read(t, ctx, s.http.URL, ready) }()
		<-ready
	}
	// three devices change
	changed := []string{"pi-0007", "pi-0100", "pi-0199"}
	for _, id := range changed {
		e, err := events.New(id, "file-000", 1, "agent:"+id, &events.StatusChanged{Kind: events.KindFile, From: "Ready", To: "Pending", Trigger: "specChanged"})
		is.NoErr(err)
		clock, _ := events.NewClock(events.ClockState{}, func() time.Time { return time.Now().Add(time.Hour) })
		clock.Stamp(&e)
		_, _, err = s.env.Store.Append(ctx, e)
		is.NoErr(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, c := range clients {
		for {
			c.mu.Lock()
			got := c.all > 0 || (c.devices["pi-0007"] && c.devices["pi-0100"] && c.devices["pi-0199"])
			c.mu.Unlock()
			if got {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a stream did not hear of every change: %v", c.devices)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	cancel()
	wg.Wait()
	whole, _ := json.Marshal(s.svc.Devices())
	total := 0
	for _, c := range clients {
		is.Equal(c.names["device"], 0) // no device JSON on the stream
		is.True(c.largest < 2048)      // every line a notice or the status
		total += c.bytes
	}
	t.Logf("%d streams received %d bytes in all (%d each); the fleet's read model is %d bytes", n, total, total/n, len(whole))
	is.True(total < len(whole)) // all of them together got less than one copy of the fleet
}

// TestStreamsAreBounded: more streams than the server keeps are refused
// with the reason, and the status counts them.
func TestStreamsAreBounded(t *testing.T) {
	is := is.New(t)
	s := serveFleet(t, fixtures.GenerateLog(1, fixtures.Options{Devices: 2, Events: 50}), api.WithMaxStreams(2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 2 {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.http.URL+"/api/stream", nil)
		res, err := http.DefaultClient.Do(req)
		is.NoErr(err)
		defer res.Body.Close()
		is.Equal(res.StatusCode, 200)
	}
	code, b := getBytes(t, s.http.URL+"/api/stream")
	is.Equal(code, http.StatusServiceUnavailable)
	is.True(strings.Contains(string(b), "too many live streams"))
	var st api.Status
	is.Equal(get(t, s.http.URL+"/api/status", &st), 200)
	is.Equal(st.Streams.Open, 2)
	is.Equal(st.Streams.Refused, uint64(1))
}
