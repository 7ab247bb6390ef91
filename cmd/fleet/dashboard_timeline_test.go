package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/projections"
)

// TestDashboardMarksARepeatingErrorAndTravelsAroundTheMoment: in headless
// Chromium against a real server and agent: a resource failing for good
// (its /etc is a file) is one timeline row marked "repeats: N× since", not
// a row per attempt, and the resource's row says it repeats; travelling to
// an early moment shows the events just before and just after it, the
// chosen one marked; and what cannot all be true (Ready for an older
// generation than desired, heartbeats long after the last event, a
// resource Reconciling with 0 attempts beside an attempt on the log) is
// marked, while a consistent device shows no such mark.
func TestDashboardMarksARepeatingErrorAndTravelsAroundTheMoment(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server, an agent and Chromium")
	}
	ctx := newBrowser(t, 1280, 1000)
	f := startBrowserFleet(t, "pi-01")
	if err := os.WriteFile(filepath.Join(f.dir, "pi-01", "root", "etc"), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\", mode: 0644}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Apply(context.Background(), f.rs.Env.Store, f.clock, "pi-01", m, "user:test", nil); err != nil {
		t.Fatal(err)
	}
	var d projections.Device
	eventstest.WaitFor(t, 90*time.Second, "motd failing 3 times in a row", func() bool {
		if f.getJSON("/api/devices/pi-01", &d) != nil {
			return false
		}
		for _, r := range d.Resources {
			if r.ID == "motd" && r.State == "Failed" && r.Repeats >= 3 {
				return true
			}
		}
		return false
	})
	if err := chromedp.Do(ctx,
		chromedp.Navigate(f.url+"#/devices/pi-01"),
		chromedp.WaitVisible(css(`#resources tr[data-resource="motd"][data-state="Failed"]`)),
		poll(`!!document.querySelector('#timeline li.type-ReconcileAttempted[data-resource="motd"][data-repeats]')`),
	); err != nil {
		t.Fatal(err)
	}
	rows := eval[int](t, ctx, `document.querySelectorAll('#timeline li.type-ReconcileAttempted[data-resource="motd"]').length`)
	repeats := eval[string](t, ctx, `document.querySelector('#timeline li.type-ReconcileAttempted[data-resource="motd"]').dataset.repeats`)
	mark := eval[string](t, ctx, `document.querySelector('#timeline li.type-ReconcileAttempted[data-resource="motd"] .repeat').textContent`)
	health := eval[string](t, ctx, `document.querySelector('#resources tr[data-resource="motd"] [data-health]').textContent`)
	t.Logf("timeline: %d ReconcileAttempted rows, %q; resource: %q", rows, mark, health)
	if rows != 1 {
		t.Errorf("the repeating error is %d rows, want one row with its count", rows)
	}
	if repeats == "" || repeats == "1" || !strings.HasPrefix(mark, "repeats: "+repeats+"× since ") {
		t.Errorf("the repeat mark is %q (data-repeats %q)", mark, repeats)
	}
	if !strings.HasPrefix(health, "repeats: ") {
		t.Errorf("the resource row does not say the error repeats: %q", health)
	}
	if !eval[bool](t, ctx, `document.getElementById('contradictions').hidden`) {
		t.Errorf("a consistent device is marked: %s", eval[string](t, ctx, `document.getElementById('contradictions').textContent`))
	}

	// travel to the second event: the events up to it and after it, the chosen one marked
	eval[bool](t, ctx, `(() => { const s = document.getElementById('travel'); s.value = '1'; s.dispatchEvent(new Event('input')); return true })()`)
	if err := chromedp.Do(ctx,
		poll(`!!document.querySelector('#timeline li[data-chosen]') && document.getElementById('timeline-caption').textContent.includes('around')`),
	); err != nil {
		t.Fatal(err)
	}
	after := eval[int](t, ctx, `document.querySelectorAll('#timeline li.future').length`)
	upTo := eval[int](t, ctx, `document.querySelectorAll('#timeline li:not(.future)').length`)
	caption := eval[string](t, ctx, `document.getElementById('timeline-caption').textContent`)
	t.Logf("around the second event: %s", caption)
	if after == 0 || upTo != 2 || !strings.Contains(caption, "2 up to it") {
		t.Errorf("around the moment: %d rows up to it (want 2), %d after (want some); %q", upTo, after, caption)
	}

	// contradictions, as the page computes them
	eval[bool](t, ctx, `(import('/static/timeline.js').then((m) => { window.contra = m.contradictions(
			{ generation: 3, observedGeneration: 2, conditions: [{ type: 'Ready', status: 'True' }],
			  resources: [{ id: 'motd', state: 'Reconciling', attempts: 0, since: '2026-01-01T00:00:00Z' }],
			  lastSeen: '2026-01-01T00:00:00Z', lastHeartbeat: '2026-01-01T01:05:00Z' },
			[{ type: 'ReconcileAttempted', resource: 'motd', at: '2026-01-01T00:00:01Z', data: { attempt: 1, outcome: 'succeeded' } }], null)
			.map((c) => c.kind + ': ' + c.text).join('\n') }), true)`)
	if err := chromedp.Do(ctx, poll(`typeof window.contra === 'string'`)); err != nil {
		t.Fatal(err)
	}
	got := eval[string](t, ctx, `window.contra`)
	t.Log("\n" + got)
	for _, want := range []string{"ready-old-generation: Ready, but for generation 2: generation 3 is desired",
		"heartbeat-after-events: heartbeat at", "(65 min)", "attempts: motd: Reconciling with 0 attempts, but the log has attempt 1 succeeded"} {
		if !strings.Contains(got, want) {
			t.Errorf("contradictions: missing %q", want)
		}
	}
}
