package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/agent"
	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections"
)

// TestDashboardServesEmbeddedAssets: the dashboard is served from the
// binary, with the content types a browser needs for modules.
func TestDashboardServesEmbeddedAssets(t *testing.T) {
	is := is.New(t)
	mux := http.NewServeMux()
	dashboardRoutes(mux)
	for path, ctype := range map[string]string{
		"/":                   "text/html",
		"/static/app.js":      "text/javascript",
		"/static/ui.js":       "text/javascript",
		"/static/timeline.js": "text/javascript",
		"/static/style.css":   "text/css",
	} {
		rec := httpGet(mux, path)
		is.Equal(rec.code, 200)                                           // served
		is.True(strings.HasPrefix(rec.header.Get("Content-Type"), ctype)) // right type
	}
	is.Equal(httpGet(mux, "/static/nope.js").code, 404)
	index := httpGet(mux, "/").body
	is.True(strings.Contains(index, `name="viewport"`))                                  // readable on a phone
	is.True(!strings.Contains(index, "http://") && !strings.Contains(index, "https://")) // nothing from elsewhere
}

type recorded struct {
	code   int
	header http.Header
	body   string
}

func httpGet(h http.Handler, path string) recorded {
	w := &recorder{header: http.Header{}}
	r, _ := http.NewRequest("GET", path, nil)
	h.ServeHTTP(w, r)
	return recorded{w.code, w.header, w.body.String()}
}

type recorder struct {
	code   int
	header http.Header
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) { r.code = code }

// chromiumPath finds Debian's chromium; without it the browser tests skip,
// except in CI where they fail.
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed: the dashboard's browser tests need it in CI (apt-get install chromium; .ci/run does)")
	}
	t.Skip("chromium is not installed: skipping the dashboard's browser tests (apt-get install chromium to run them)")
	return ""
}

// screenshotDir is where the browser tests leave their screenshots for
// people to look at: $FLEET_SCREENSHOTS, else testdata/out/screenshots.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("FLEET_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("testdata", "out", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// browserFleet is a real fleet server (embedded JetStream, projections, time
// travel, dashboard) with real agents, for the browser tests.
type browserFleet struct {
	t     *testing.T
	dir   string
	rs    *RunningServer
	url   string
	clock *events.Clock
}

func startBrowserFleet(t *testing.T, devices ...string) *browserFleet {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rs, err := (&ServerCmd{Data: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0",
		RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Start(ctx, &Globals{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	f := &browserFleet{t: t, dir: dir, rs: rs, url: "http://" + rs.Env.HTTPAddr + "/", clock: clock}
	for _, id := range devices {
		root := filepath.Join(dir, id, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(rs.Env.NATSURL)
		if err != nil {
			t.Fatal(err)
		}
		h, err := agent.Start(ctx, nc, id, agent.WithLog(jsstore.NewLazy(nc)), agent.WithRoot(root), agent.WithStateDir(filepath.Join(dir, id, "state")),
			agent.WithLabels(map[string]string{"site": "test"}), agent.WithManifestPoll(time.Second),
			agent.WithHeartbeatInterval(time.Second), agent.WithShutdownGrace(time.Second),
			agent.WithBackoff(time.Second, 4*time.Second), agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.Stop(); nc.Close() })
	}
	return f
}

func (f *browserFleet) apply(device string, names ...string) {
	f.t.Helper()
	m, err := demoManifest(names...)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := events.Apply(context.Background(), f.rs.Env.Store, f.clock, device, m, "user:test", nil); err != nil {
		f.t.Fatal(err)
	}
}

func (f *browserFleet) getJSON(path string, v any) error {
	resp, err := http.Get(strings.TrimSuffix(f.url, "/") + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitReady waits until the API shows device Ready at generation gen.
func (f *browserFleet) waitReady(device string, gen int64) { f.waitSettled(device, gen, true) }

// waitSettled waits until the API shows device settled at generation gen,
// and Ready if ready.
func (f *browserFleet) waitSettled(device string, gen int64, ready bool) {
	f.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var d projections.Device
		if f.getJSON("/api/devices/"+device, &d) == nil && d.ObservedGeneration >= gen {
			if c, _ := d.Condition(projections.CondReady); c.Status == projections.True || !ready {
				return
			}
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s not Ready at generation %d within 60s: %+v", device, gen, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newBrowser(t *testing.T, width, height int64) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(int(width), int(height)),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	// Every uncaught exception of the page fails the test.
	var mu sync.Mutex
	var thrown []string
	done := make(chan struct{})
	messages := chromedp.Console(ctx)
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() {
				mu.Lock()
				thrown = append(thrown, m.String())
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		cancelT()
		<-done
		cancelB()
		cancelA()
		mu.Lock()
		defer mu.Unlock()
		for _, x := range thrown {
			t.Errorf("the page threw: %s", x)
		}
	})
	return ctx
}

func screenshot(t *testing.T, dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		buf, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			return err
		}
		t.Logf("screenshot: %s", p)
		return nil
	})
}

// poll waits until the JavaScript expression is true in the page.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(45*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))(ctx, tg)
		return err
	})
}

// eval runs a JavaScript expression and returns its value.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

type css = chromedp.CSS

// TestDashboardInBrowser drives the dashboard in headless Chromium against a
// real server and agents: the overview lists the devices, a live update
// arrives after an apply without a reload, a click opens a device, and the
// time slider shows the device as it was before its rollout.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, agents and Chromium")
	}
	chromiumPath(t)
	is := is.New(t)
	shots := screenshotDir(t)
	f := startBrowserFleet(t, "pi-01", "pi-02", "pi-03")
	// pi-03 gets a resource that cannot be written: /etc/sensor is a file.
	is.NoErr(os.MkdirAll(filepath.Join(f.dir, "pi-03", "root", "etc"), 0o755))
	is.NoErr(os.WriteFile(filepath.Join(f.dir, "pi-03", "root", "etc", "sensor"), []byte("file\n"), 0o644))
	f.apply("pi-01", "demo/base.yaml")
	f.apply("pi-02", "demo/base.yaml")
	f.apply("pi-03", "demo/base.yaml", "demo/failing.yaml")
	f.waitReady("pi-01", 1)
	f.waitReady("pi-02", 1)
	f.waitSettled("pi-03", 1, false)
	time.Sleep(50 * time.Millisecond)
	beforeRollout := time.Now()
	time.Sleep(50 * time.Millisecond)
	f.apply("pi-01", "demo/rollout.yaml")
	f.waitReady("pi-01", 2)

	ctx := newBrowser(t, 1280, 900)
	is.NoErr(chromedp.Do(ctx,
		chromedp.Navigate(f.url),
		chromedp.WaitVisible(css(`tr[data-device="pi-03"]`)),
		poll(`document.getElementById("live").dataset.state === "live"`),
		screenshot(t, shots, "overview.png"),
	))
	is.Equal(eval[int](t, ctx, `document.querySelectorAll("#devices tbody tr").length`), 3) // the overview lists every device

	// A live update: apply to pi-02 while the page is open; its row changes
	// without a reload.
	eval[string](t, ctx, `window.__notReloaded = "yes"`)
	f.apply("pi-02", "demo/rollout.yaml")
	is.NoErr(chromedp.Do(ctx,
		poll(`(document.querySelector('tr[data-device="pi-02"] td.gen')?.textContent || "").startsWith("2 / 2")`),
		screenshot(t, shots, "overview-live-update.png"),
	))
	is.True(strings.HasPrefix(eval[string](t, ctx, `document.querySelector('tr[data-device="pi-02"] td.gen').textContent`), "2 / 2")) // observed / desired after the apply
	is.Equal(eval[string](t, ctx, `window.__notReloaded`), "yes")                                                                     // the page was not reloaded

	// Search and filter: the overview asks the server for the matching page.
	is.NoErr(chromedp.Do(ctx,
		chromedp.SendKeys(css(`#device-search`), "pi-03"),
		poll(`document.querySelectorAll("#devices tbody tr").length === 1 && !!document.querySelector('tr[data-device="pi-03"]')`),
		chromedp.Evaluate[chromedp.Void](`(() => { const q = document.getElementById("device-search"); q.value = ""; q.dispatchEvent(new Event("input"));
			const s = document.getElementById("device-status"); s.value = "degraded"; s.dispatchEvent(new Event("change")); })()`),
		poll(`document.querySelectorAll("#devices tbody tr").length === 1 && !!document.querySelector('tr[data-device="pi-03"]') && location.hash.includes("status=degraded")`),
		chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById("device-status"); s.value = ""; s.dispatchEvent(new Event("change")); })()`),
		poll(`document.querySelectorAll("#devices tbody tr").length === 3`),
	))

	// Click into pi-01: its resources, timeline and conditions.
	is.NoErr(chromedp.Do(ctx,
		chromedp.Click(css(`tr[data-device="pi-01"] a.device-link`)),
		chromedp.WaitVisible(css(`#resources tr[data-resource="feature-flags"]`)),
		chromedp.WaitVisible(css(`#timeline li.type-ManifestApplied`)),
		screenshot(t, shots, "device.png"),
	))
	is.Equal(eval[int](t, ctx, `document.querySelectorAll("#resources tbody tr").length`), 4) // generation 2 has four resources

	// Time travel: step the slider back (keyboard, as a user would) past
	// every event of the rollout.
	var evs []events.Stored
	is.NoErr(f.getJSON("/api/devices/pi-01/events", &evs))
	after := 0
	for _, e := range evs {
		if e.At.After(beforeRollout) {
			after++
		}
	}
	is.True(after > 0)
	steps := []chromedp.Action[chromedp.Void]{chromedp.Focus(css(`#travel`))}
	for range after + 1 { // "now" is one past the newest event
		steps = append(steps, chromedp.KeyEvent(kb.ArrowLeft))
	}
	steps = append(steps,
		poll(`!document.getElementById("travel-banner").hidden && document.querySelector("#device-head .gen").textContent.startsWith("generation 1,")`),
		screenshot(t, shots, "device-time-travel.png"),
	)
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("time travel: %v; page shows %q, banner %q", err,
			eval[string](t, ctx, `document.querySelector("#device-head .gen").textContent`),
			eval[string](t, ctx, `document.getElementById("travel-when").textContent + " / " + document.getElementById("travel-banner").textContent`))
	}
	is.True(strings.HasPrefix(eval[string](t, ctx, `document.querySelector("#device-head .gen").textContent`), "generation 1, observed 1")) // as it was before the rollout
	is.True(strings.Contains(eval[string](t, ctx, `document.getElementById("travel-banner").textContent`), "As it was at"))
	is.Equal(eval[int](t, ctx, `document.querySelectorAll('#resources tr[data-resource="feature-flags"]').length`), 0) // feature-flags did not exist yet
	is.Equal(eval[int](t, ctx, `document.querySelectorAll('#resources tr[data-resource="app-config"][data-state="Ready"]').length`), 1)

	// Back to now.
	is.NoErr(chromedp.Do(ctx,
		chromedp.Click(css(`#travel-live`)),
		poll(`document.getElementById("travel-banner").hidden && document.querySelector("#device-head .gen").textContent.startsWith("generation 2,")`),
	))

	// The failing device: its resource's why, error and next retry.
	is.NoErr(chromedp.Do(ctx,
		chromedp.Navigate(f.url+"#/devices/pi-03"),
		chromedp.WaitVisible(css(`#why li[data-resource="sensor-calib"]`)),
		chromedp.WaitVisible(css(`#resources tr[data-resource="sensor-calib"][data-state="Failed"]`)),
		screenshot(t, shots, "device-failing.png"),
	))
	why := eval[string](t, ctx, `document.querySelector('#why li[data-resource="sensor-calib"]').textContent`)
	is.True(strings.Contains(why, "not a directory")) // the error, in the why
	is.True(strings.Contains(why, "next retry"))      // and when it is tried again
	is.True(eval[string](t, ctx, `document.querySelector('#resources tr[data-resource="sensor-calib"] td[data-label="Next retry"]').textContent`) != "")
	// Its retries arrive on the open page: the timeline grows without a reload.
	n := eval[int](t, ctx, `document.querySelectorAll("#timeline li").length`)
	is.NoErr(chromedp.Do(ctx, poll(fmt.Sprintf(`document.querySelectorAll("#timeline li").length > %d`, n))))

	// The same pages on a phone-sized screen.
	phone := newBrowser(t, 390, 844)
	is.NoErr(chromedp.Do(phone,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Navigate(f.url),
		chromedp.WaitVisible(css(`tr[data-device="pi-03"]`)),
		screenshot(t, shots, "overview-phone.png"),
		chromedp.Navigate(f.url+"#/devices/pi-01"),
		chromedp.WaitVisible(css(`#resources tr[data-resource="motd"]`)),
		screenshot(t, shots, "device-phone.png"),
	))
	is.True(eval[int](t, phone, `document.documentElement.scrollWidth`) <= 390) // nothing wider than the phone
}
