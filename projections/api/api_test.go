package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// served runs a projection service on an embedded server over a generated
// log, with its HTTP API on httptest and its micro service on the connection.
type served struct {
	env  *eventstest.Env
	svc  *projections.Service
	http *httptest.Server
	evs  []events.Event
	last uint64
}

func serve(t *testing.T) *served {
	t.Helper()
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	evs := fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Resources: 3, Events: 400, UnknownKind: true, DriftRate: 0.2})
	if err := env.Store.AppendBatch(ctx, evs[:300]); err != nil {
		t.Fatal(err)
	}
	last, _ := env.Store.LastSeq(ctx)
	svc, err := projections.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, env.Store) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := svc.WaitFor(wctx, last); err != nil {
		t.Fatal(err)
	}
	a := api.NewServer(svc, env.Store, time.Minute, api.WithRebuild(func(ctx context.Context) error { return svc.Rebuild(ctx, env.Store, nil) }))
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

func get(t *testing.T, url string, out any) int {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return res.StatusCode
}

func TestHTTPRoutesAnswerFromTheReadModels(t *testing.T) {
	is := is.New(t)
	s := serve(t)
	u := s.http.URL
	var page api.DevicePage
	is.Equal(get(t, u+"/api/devices", &page), 200)
	devs := page.Devices
	is.Equal(len(devs), 3)
	is.Equal(page.Total, 3)
	is.Equal(page.Next, "")
	want := s.svc.Devices()
	for i := range devs {
		is.Equal(devs[i].Device, want[i].Device)
		is.Equal(devs[i].Generation, want[i].Generation)
	}
	id := devs[0].Device

	var d projections.Device
	is.Equal(get(t, u+"/api/devices/"+id, &d), 200)
	is.Equal(d.Device, id)
	_, hasStale := d.Condition(projections.CondStale)
	is.True(hasStale) // the API adds the Stale condition
	is.Equal(get(t, u+"/api/devices/nope", nil), 404)
	is.Equal(get(t, u+"/api/devices/bad.id", nil), 400)

	var drift []projections.ResourceDrift
	is.Equal(get(t, u+"/api/devices/"+id+"/drift", &drift), 200)
	is.Equal(len(drift), len(s.svc.Drift(id)))

	var evs []events.Stored
	is.Equal(get(t, u+"/api/devices/"+id+"/events?limit=5", &evs), 200)
	is.Equal(len(evs), 5)
	for _, e := range evs {
		is.Equal(e.Device, id)
	}
	is.Equal(get(t, u+"/api/devices/"+id+"/events?limit=0", nil), 400)
	is.Equal(get(t, u+"/api/devices/"+id+"/events?from=x", nil), 400)

	res := d.Resources[0].ID
	var x projections.Explanation
	is.Equal(get(t, u+"/api/explain/"+id+"/"+res, &x), 200)
	is.Equal(x.Resource, res)
	is.True(len(x.Why) > 0)
	is.Equal(get(t, u+"/api/explain/"+id+"/nope", nil), 404)

	var st api.Status
	is.Equal(get(t, u+"/api/status", &st), 200)
	is.Equal(st.Checkpoint, s.last)
	is.Equal(st.Lag, uint64(0))

	var h map[string]any
	is.Equal(get(t, u+"/healthz", &h), 200)
	is.Equal(h["ok"], true)

	mres, err := http.Get(u + "/metrics")
	is.NoErr(err)
	mb, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	is.True(strings.Contains(string(mb), "fleet_projection_checkpoint "))
	is.True(strings.Contains(string(mb), "fleet_projection_lag 0"))
}

func TestStreamSendsAChangeNoticeAfterAnAppend(t *testing.T) {
	is := is.New(t)
	s := serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.http.URL+"/api/stream", nil)
	res, err := http.DefaultClient.Do(req)
	is.NoErr(err)
	defer res.Body.Close()
	is.Equal(res.Header.Get("Content-Type"), "text/event-stream")
	r := bufio.NewReader(res.Body)
	next := func() (string, []byte) { // one server-sent event
		var name string
		var data []byte
		for {
			line, err := r.ReadString('\n')
			is.NoErr(err)
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "event: "):
				name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = []byte(strings.TrimPrefix(line, "data: "))
			case line == "" && name != "":
				return name, data
			}
		}
	}
	// on connect: the status, and no device
	name, _ := next()
	is.Equal(name, "status")
	// an append reaches the stream as a notice naming that device
	e := s.evs[300]
	_, _, err = s.env.Store.Append(ctx, e)
	is.NoErr(err)
	for {
		name, data := next()
		is.True(name == "status" || name == "changed") // notices, never device JSON
		if name != "changed" {
			continue
		}
		var n struct {
			Devices []string `json:"devices"`
		}
		is.NoErr(json.Unmarshal(data, &n))
		if slices.Contains(n.Devices, e.Device) {
			break
		}
	}
}

func TestMicroClientGetsDevicesAndErrors(t *testing.T) {
	is := is.New(t)
	s := serve(t)
	ctx := context.Background()
	cl := api.NewClient(s.env.Conn)
	devs, err := cl.Devices(ctx) // the path of 'fleet get devices'
	is.NoErr(err)
	is.Equal(len(devs), 3)
	d, err := cl.Device(ctx, devs[1].Device)
	is.NoErr(err)
	is.Equal(d.Device, devs[1].Device)
	_, err = cl.Device(ctx, "nope")
	is.True(errors.Is(err, events.ErrNotFound))
	_, err = cl.Device(ctx, "bad.id")
	is.True(errors.Is(err, events.ErrInvalid))
	st, err := cl.Status(ctx)
	is.NoErr(err)
	is.Equal(st.Checkpoint, s.last)
	x, err := cl.Explain(ctx, d.Device, d.Resources[0].ID)
	is.NoErr(err)
	is.Equal(x.Device, d.Device)
	dr, err := cl.Drift(ctx, "")
	is.NoErr(err)
	is.Equal(len(dr), len(s.svc.Drift("")))
}
