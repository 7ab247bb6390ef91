package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
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

// TestRolloutTimeTravelJudgesTheDevicesAsTheyWere: a rollout of 3 real
// agents in waves 2,100% with a soak of an hour; its two wave-0 devices
// are Ready on the rollout's generation (soaking: waiting) at T, then one
// is made to fail (an operator's generation 3 writing under a path that
// is a file; the other still soaking keeps the wave in progress). Now the
// wave counts 1 failed, 1 waiting; GET /api/rollouts/{id}?t=T and 'fleet
// rollout status --at T' count 2 waiting, as they were then (the
// time-travel index's devices at T), not as they are now.
func TestRolloutTimeTravelJudgesTheDevicesAsTheyWere(t *testing.T) {
	if testing.Short() {
		t.Skip("real agents: not in -short")
	}
	is := is.New(t)
	f := startRolloutFleet(t, 3, false)
	plan := rollout.Plan("RT", f.ids, []string{"2", "100%"})
	first := plan[0][0]
	f.start("RT", "--waves", "2,100%", "--soak", "1h")
	stop := f.controller()
	defer stop()
	for _, id := range plan[0] {
		f.waitDevice(id, func(d projections.Device) bool { return d.ObservedGeneration >= 2 && ready(d) })
	}
	var v api.RolloutView
	gate := func(path string, ok func(g api.WaveGate) bool) api.WaveGate {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for f.getJSON(path, &v) != 200 || len(v.WaveGates) == 0 || !ok(v.WaveGates[0]) {
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: not as expected: %+v", path, v)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return v.WaveGates[0]
	}
	soaking := func(g api.WaveGate) bool { return g.State == "in progress" && g.Waiting == 2 && g.Failed == 0 }
	gate("/api/rollouts/RT", soaking)
	time.Sleep(20 * time.Millisecond) // T strictly after the events folded so far
	then := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)

	// a file where generation 3 wants a directory: a real failure of the real reconciler
	is.NoErr(os.WriteFile(filepath.Join(f.dir, first, "root", "srv", "blocker"), []byte("not a directory"), 0o644))
	clock, _ := events.NewClock(events.ClockState{}, nil)
	m := events.Manifest{Resources: []events.Resource{file("base", "/srv/base"), file("other", "/srv/blocker/other")}}
	_, err := events.Apply(context.Background(), f.rs.Env.Store, clock, first, m, "user:ops", nil)
	is.NoErr(err)
	f.waitDevice(first, func(d projections.Device) bool {
		return d.Generation >= 3 && slices.ContainsFunc(d.Resources, func(r projections.Resource) bool { return r.State == "Failed" })
	})
	now := gate("/api/rollouts/RT", func(g api.WaveGate) bool { return g.Failed == 1 })
	is.Equal([]any{now.State, now.Waiting}, []any{"in progress", 1})

	at := then.Format(time.RFC3339Nano)
	past := gate("/api/rollouts/RT?t="+at, func(api.WaveGate) bool { return true })
	is.True(v.AsOf != nil)
	is.Equal([]any{past.State, past.Targeted, past.Passed, past.Failed, past.Waiting, past.Offline}, []any{"in progress", 2, 0, 0, 2, 0})
	is.True(strings.Contains(v.WaitingOn, "soaking")) // the gate it waited on then
	out, code := replayCLI(t, "rollout", "status", "RT", "--at", at, "-o", "json", f.natsF)
	is.Equal(code, 0)
	var cv api.RolloutView
	is.NoErr(json.Unmarshal([]byte(out), &cv))
	is.Equal([]int{cv.WaveGates[0].Failed, cv.WaveGates[0].Waiting}, []int{0, 2})
}
