package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/rollout"
)

func (f *rolloutFleet) getJSON(path string, v any) int {
	f.t.Helper()
	resp, err := http.Get("http://" + f.rs.Env.HTTPAddr + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			f.t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestRolloutReadSideAPIExplainTimeTravelAndPage: a rollout of 6 real
// agents in waves 1,50%,100% with a soak of an hour holds at wave 0. The
// HTTP API lists it and shows its waves, device counts and the gate it
// waits on; 'fleet explain' and GET /api/devices/{id}/rollouts say that a
// device of wave 2 is held by the rollout (its wave not started), then that
// it is paused; 'fleet rollout status --at' and ?t= show it Running as it
// was before the pause. In headless Chromium the main page's nav link
// leads to the rollout page and its link back; the rollout page shows the
// waves and follows the pause and the resume live (no reload), and time
// travel shows the past.
func TestRolloutReadSideAPIExplainTimeTravelAndPage(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 6, false)
	plan := rollout.Plan("RP", f.ids, []string{"1", "50%", "100%"})
	is.Equal([]int{len(plan[0]), len(plan[1]), len(plan[2])}, []int{1, 2, 3})
	f.start("RP", "--waves", "1,50%,100%", "--soak", "1h")
	stop := f.controller()
	defer stop()
	f.waitRollout("RP", func(r *rollout.Rollout) bool { return r.Targeted[plan[0][0]] != nil })
	f.waitDevice(plan[0][0], func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })

	var list []api.RolloutView
	is.Equal(f.getJSON("/api/rollouts", &list), 200)
	is.Equal(len(list), 1)
	is.Equal(list[0].ID, "RP")
	var v api.RolloutView
	eventuallyJSON := func(path string, ok func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for f.getJSON(path, &v) != 200 || !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: not as expected: %+v", path, v)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventuallyJSON("/api/rollouts/RP", func() bool { return len(v.WaveGates) == 3 && v.WaveGates[0].Waiting == 1 })
	is.Equal(v.WaveGates[0].State, "in progress")
	is.Equal(v.WaveGates[0].Targeted, 1)
	is.Equal(v.WaveGates[2].Devices, 3)
	is.True(strings.Contains(v.WaitingOn, "soaking")) // the gate it waits on, and why
	is.Equal(f.getJSON("/api/rollouts/nope", &v), 404)
	is.Equal(f.getJSON("/api/rollouts/RP?t=yesterday", &v), 400)

	held := plan[2][0]
	out, code := replayCLI(t, "explain", held, "motd", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "held by rollout RP (Running): matched, in wave 2, which has not started (wave 0 in progress)"))
	out, code = replayCLI(t, "explain", plan[0][0], "motd", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "in rollout RP (Running): targeted in wave 0 (generation 2)"))
	var holds []api.RolloutHold
	is.Equal(f.getJSON("/api/devices/"+held+"/rollouts", &holds), 200)
	is.Equal(len(holds), 1)
	is.True(holds[0].Held && holds[0].Wave == 2)

	time.Sleep(50 * time.Millisecond)
	before := time.Now()
	time.Sleep(50 * time.Millisecond)
	_, code = replayCLI(t, "rollout", "pause", "RP", "--reason", "lunch", f.natsF)
	is.Equal(code, 0)
	out, code = replayCLI(t, "explain", held, "motd", "-o", "json", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "the rollout is paused (operator: lunch)"))

	// time travel: as it was before the pause
	out, code = replayCLI(t, "rollout", "status", "RP", "--at", before.Format(time.RFC3339Nano), "-o", "json", f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, `"state": "Running"`))
	_, code = replayCLI(t, "rollout", "status", "RP", "--at", before.Add(-time.Hour).Format(time.RFC3339Nano), f.natsF)
	is.Equal(code, 1) // had not started by then
	is.Equal(f.getJSON("/api/rollouts/RP?t="+before.UTC().Format(time.RFC3339Nano), &v), 200)
	is.Equal(v.State, rollout.Running)
	is.True(v.AsOf != nil)
	is.Equal(f.getJSON("/api/rollouts/RP", &v), 200)
	is.Equal(v.State, rollout.Paused)

	// the page, in a real browser
	shots := screenshotDir(t)
	ctx := newBrowser(t, 1280, 900)
	base := "http://" + f.rs.Env.HTTPAddr + "/static/rollouts.html"
	is.NoErr(chromedp.Do(ctx,
		// the main page links to the rollout page, and the rollout page back
		chromedp.Navigate("http://"+f.rs.Env.HTTPAddr+"/"),
		chromedp.Click(css(`#nav-rollouts`)),
		chromedp.WaitVisible(css(`tr[data-rollout="RP"]`)), // only the rollout page has it
	))
	is.Equal(eval[string](t, ctx, `location.pathname`), "/static/rollouts.html")
	is.NoErr(chromedp.Do(ctx,
		chromedp.Click(css(`#nav-devices`)),
		chromedp.WaitVisible(css(`#nav-rollouts`)), // only the main page has it
	))
	is.Equal(eval[string](t, ctx, `location.pathname`), "/")
	is.NoErr(chromedp.Do(ctx,
		chromedp.Navigate(base+"#/"),
		chromedp.WaitVisible(css(`tr[data-rollout="RP"]`)),
		chromedp.Navigate(base+"#/RP"),
		poll(`document.getElementById("rollout")?.dataset.state === "Paused"`),
		poll(`document.getElementById("live").dataset.state === "live"`),
		screenshot(t, shots, "rollout-paused.png"),
	))
	is.Equal(eval[int](t, ctx, `document.querySelectorAll("table.waves tbody tr").length`), 3)
	is.True(strings.Contains(eval[string](t, ctx, `document.getElementById("waiting-on").textContent`), "operator: lunch"))
	eval[string](t, ctx, `window.__notReloaded = "yes"`)
	_, code = replayCLI(t, "rollout", "resume", "RP", f.natsF)
	is.Equal(code, 0)
	is.NoErr(chromedp.Do(ctx,
		poll(`document.getElementById("rollout")?.dataset.state === "Running" && document.querySelector('tr[data-wave="0"] td[data-k="waiting"]')?.textContent === "1"`),
		screenshot(t, shots, "rollout-live.png"),
	))
	is.Equal(eval[string](t, ctx, `window.__notReloaded`), "yes") // live: no reload
	is.Equal(eval[string](t, ctx, `document.querySelector('tr[data-wave="0"]').dataset.state`), "in progress")
	is.NoErr(chromedp.Do(ctx,
		chromedp.Navigate(fmt.Sprintf("%s#/RP?t=%s", base, before.UTC().Format(time.RFC3339Nano))),
		poll(`!!document.getElementById("as-of") && document.getElementById("rollout").dataset.state === "Running"`),
		screenshot(t, shots, "rollout-time-travel.png"),
	))
}
