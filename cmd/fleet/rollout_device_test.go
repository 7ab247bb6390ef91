package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/projections/api"
	"github.com/fleet-dev/fleet/rollout"
)

// rawGet is the body of GET path on the server's HTTP API.
func (f *rolloutFleet) rawGet(path string) (string, int) {
	f.t.Helper()
	resp, err := http.Get("http://" + f.rs.Env.HTTPAddr + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b), resp.StatusCode
}

// TestRolloutHoldOnTheDeviceReadModel: 3 real agents; before any rollout
// the device JSON (API and 'fleet get device -o json') has no "rollouts".
// A rollout in waves 1,100% with a soak of an hour targets wave 0 and is
// paused: 'fleet get device' of a wave-1 device prints "held by rollout RH
// (Paused)" and why, its -o json and GET /api/devices/{id} carry the hold
// (rollout, state, held, reason), the wave-0 device says it is in the
// rollout (targeted), and the dashboard's device page shows the line.
func TestRolloutHoldOnTheDeviceReadModel(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 3, false)
	body, code := f.rawGet("/api/devices/" + f.ids[0])
	is.Equal(code, 200)
	is.True(!strings.Contains(body, `"rollouts"`)) // no rollout: the device JSON as before
	out, code := replayCLI(t, "get", "device", f.ids[0], "-o", "json", f.natsF)
	is.Equal(code, 0)
	is.True(!strings.Contains(out, `"rollouts"`))

	plan := rollout.Plan("RH", f.ids, []string{"1", "100%"})
	f.start("RH", "--waves", "1,100%", "--soak", "1h")
	stop := f.controller()
	defer stop()
	first, held := plan[0][0], plan[1][0]
	f.waitRollout("RH", func(r *rollout.Rollout) bool { return r.Targeted[first] != nil })
	_, code = replayCLI(t, "rollout", "pause", "RH", "--reason", "lunch", f.natsF)
	is.Equal(code, 0)
	f.waitRollout("RH", func(r *rollout.Rollout) bool { return r.State == rollout.Paused })

	why := "the rollout is paused (operator: lunch)"
	out, code = replayCLI(t, "get", "device", held, f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "held by rollout RH (Paused): matched, in wave 1, not targeted: "+why))
	out, code = replayCLI(t, "get", "device", held, "-o", "json", f.natsF)
	is.Equal(code, 0)
	var dv api.DeviceView
	is.NoErr(json.Unmarshal([]byte(out), &dv))
	is.Equal(dv.Device.Device, held)
	is.Equal(len(dv.Rollouts), 1)
	h := dv.Rollouts[0]
	is.Equal([]any{h.Rollout, h.State, h.Held, h.Wave}, []any{"RH", rollout.Paused, true, 1})
	is.True(strings.Contains(h.Reason, why))

	dv = api.DeviceView{}
	is.Equal(f.getJSON("/api/devices/"+held, &dv), 200)
	is.Equal(dv.Device.Device, held)
	is.Equal(len(dv.Rollouts), 1)
	is.Equal([]any{dv.Rollouts[0].Rollout, dv.Rollouts[0].State, dv.Rollouts[0].Held}, []any{"RH", rollout.Paused, true})
	is.True(strings.Contains(dv.Rollouts[0].Reason, why))
	is.True(len(dv.Resources) > 0) // the device read model, whole

	out, code = replayCLI(t, "get", "device", first, f.natsF)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "in rollout RH (Paused): targeted in wave 0 (generation 2); the rollout is paused"))

	// the dashboard's device page, in a real browser
	shots := screenshotDir(t)
	ctx := newBrowser(t, 1280, 900)
	is.NoErr(chromedp.Do(ctx,
		chromedp.Navigate("http://"+f.rs.Env.HTTPAddr+"/#/devices/"+held),
		poll(`document.querySelector('.hold[data-rollout="RH"]')?.dataset.held === "true"`),
		screenshot(t, shots, "device-held-by-rollout.png"),
	))
	line := eval[string](t, ctx, `document.querySelector('.hold[data-rollout="RH"]').textContent`)
	is.True(strings.Contains(line, "held by rollout RH (Paused): matched, in wave 1, not targeted: "+why))
	is.Equal(eval[string](t, ctx, `document.querySelector('.hold[data-rollout="RH"] a').getAttribute("href")`), "/static/rollouts.html#/RH")
}
