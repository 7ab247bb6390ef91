package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
	"github.com/fleet-dev/fleet/replay/timetravel"
)

// What the demo watches while it plays (demoFold) and what it prints at the
// end (demoSummary).

// demoFold is the story's view of the log: the same folds the projection
// service runs, kept live by following the stream.
type demoFold struct {
	mu      sync.Mutex
	fleet   *projections.Fleet
	drift   *projections.Drift
	last    uint64
	wake    chan struct{}
	lastErr error
}

func newDemoFold() *demoFold {
	return &demoFold{fleet: projections.NewFleet(), drift: projections.NewDrift(), wake: make(chan struct{})}
}

// changed returns a channel closed at the next applied event. Call with mu held.
func (f *demoFold) changed() <-chan struct{} { return f.wake }

func (f *demoFold) follow(ctx context.Context, env *ServerEnv) {
	for s, err := range env.Store.Follow(ctx, events.Filter{}) {
		if err != nil {
			var bad *events.BadMessage
			if !errors.As(err, &bad) {
				f.mu.Lock()
				f.lastErr = err
				f.mu.Unlock()
			}
			continue
		}
		f.mu.Lock()
		f.fleet.Apply(s)
		f.drift.Apply(s)
		f.last = s.Seq
		close(f.wake)
		f.wake = make(chan struct{})
		f.mu.Unlock()
	}
}

// ---- summary --------------------------------------------------------------------

type demoSummary struct {
	Dashboard  string                      `json:"dashboard"`
	Devices    []projections.Device        `json:"devices"`
	Failing    string                      `json:"failing"` // the device meant to fail
	Drift      []projections.ResourceDrift `json:"drift"`
	TimeTravel demoTimeTravel              `json:"timeTravel"`
	Verify     demoVerify                  `json:"verify"`
	Milestones []demoMilestone             `json:"milestones"`
	Events     uint64                      `json:"events"`

	clean func(string) string
}

type demoTimeTravel struct {
	Device string             `json:"device"`
	At     time.Time          `json:"at"`
	Then   projections.Device `json:"then"`
	NowGen int64              `json:"nowGeneration"`
	URL    string             `json:"url"`
	// IndexAgrees: the server's time-travel index (GET URL) gave the same
	// device as folding the log; nil when the server could not be asked.
	IndexAgrees *bool `json:"indexAgrees,omitempty"`
}

// askIndex asks the server's time-travel API and compares its answer with
// want; nil if it could not answer within a few seconds.
func askIndex(ctx context.Context, u string, want projections.Device) *bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	wantJSON, _ := json.Marshal(want)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var got projections.Device
			derr := json.NewDecoder(resp.Body).Decode(&got)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && derr == nil {
				gotJSON, _ := json.Marshal(got)
				same := bytes.Equal(gotJSON, wantJSON)
				return &same
			}
			if resp.StatusCode == http.StatusNotFound && derr != nil {
				return nil // no time-travel API in this build
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

type demoVerify struct {
	Passed     bool     `json:"passed"`
	Summary    string   `json:"summary"`
	Violations []string `json:"violations,omitempty"`
}

func (d *demo) summary(ctx context.Context) (*demoSummary, error) {
	last, err := d.st.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	// Let the fold reach the end of the log so the summary is the whole story.
	if err := d.waitFor(ctx, "read the log", 30*time.Second, func(f *demoFold) (bool, string) { return f.last >= last, "" }); err != nil {
		return nil, err
	}
	s := &demoSummary{Dashboard: d.url, Failing: d.bad.id, Milestones: d.milestones, Events: last, clean: d.clean}
	d.fold.mu.Lock()
	for _, dev := range d.devices {
		if v, ok := d.fold.fleet.Device(dev.id); ok {
			s.Devices = append(s.Devices, v)
		}
	}
	s.Drift = d.fold.drift.All()
	d.fold.mu.Unlock()

	tt := d.drifting.id
	then, _, _, err := timetravel.FoldAt(d.st.Read(ctx, events.Filter{Device: tt}), timetravel.Query{Device: tt, At: d.beforeRollout})
	if err != nil {
		return nil, fmt.Errorf("time travel: %w", err)
	}
	at := d.beforeRollout.Format(time.RFC3339Nano)
	s.TimeTravel = demoTimeTravel{Device: tt, At: d.beforeRollout, Then: then, NowGen: s.Devices[0].Generation,
		URL: fmt.Sprintf("%sapi/devices/%s/at?t=%s", d.url, tt, url.QueryEscape(at))}
	s.TimeTravel.IndexAgrees = askIndex(ctx, s.TimeTravel.URL, then)

	rep, err := replay.Verify(d.st.Read(ctx, events.Filter{}), true)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	s.Verify = demoVerify{Passed: rep.OK(), Summary: rep.SummaryLine()}
	for _, v := range rep.Violations {
		s.Verify.Violations = append(s.Verify.Violations, v.String())
	}
	return s, nil
}

func (s *demoSummary) print(w io.Writer) {
	fmt.Fprintf(w, "\n=== Summary: the fleet (%d events on the log)\n", s.Events)
	var rows [][]string
	for _, v := range s.Devices {
		ready, _ := v.Condition(projections.CondReady)
		state := "Ready"
		if ready.Status != projections.True {
			state = "NOT READY"
		}
		n := 0
		var notes []string
		for _, r := range v.Resources {
			if r.State == "Ready" {
				n++
			} else {
				notes = append(notes, fmt.Sprintf("%s %s after %d attempts: %s", r.ID, r.State, r.Attempts, shortErr(s.clean(r.Error))))
			}
		}
		note := strings.Join(notes, "; ")
		if v.Device == s.Failing && note != "" {
			note += " (meant to fail)"
		}
		rows = append(rows, []string{v.Device, state, fmt.Sprintf("%d/%d", v.ObservedGeneration, v.Generation),
			fmt.Sprintf("%d/%d", n, len(v.Resources)), v.Labels["ring"], note})
	}
	_ = table(w, []string{"DEVICE", "STATE", "OBSERVED/GEN", "READY", "RING", "NOTE"}, rows)

	fmt.Fprintf(w, "\n=== Drift history\n")
	rows = rows[:0]
	for _, r := range s.Drift {
		for _, x := range r.Drifts {
			var diffs []string
			for _, df := range x.Differences {
				diffs = append(diffs, df.Field)
			}
			fixed := "open"
			if x.CorrectedAt != nil {
				fixed = fmt.Sprintf("%s after %s", x.Correction, x.CorrectedAt.Sub(x.At).Round(time.Millisecond))
			}
			rows = append(rows, []string{r.Device, r.Resource, x.At.Local().Format("15:04:05.000"), strings.Join(diffs, ","), fixed})
		}
	}
	_ = table(w, []string{"DEVICE", "RESOURCE", "AT", "DIFFERED", "CORRECTED"}, rows)

	t := s.TimeTravel
	fmt.Fprintf(w, "\n=== Time travel: %s at %s, before the rollout\n", t.Device, t.At.Local().Format("15:04:05.000"))
	var res []string
	for _, r := range t.Then.Resources {
		res = append(res, r.ID+" "+r.State)
	}
	fmt.Fprintf(w, "then: generation %d, observed %d: %s\n", t.Then.Generation, t.Then.ObservedGeneration, strings.Join(res, ", "))
	fmt.Fprintf(w, "now:  generation %d\n", t.NowGen)
	switch {
	case t.IndexAgrees == nil:
		fmt.Fprintf(w, "ask it yourself: %s\n", t.URL)
	case *t.IndexAgrees:
		fmt.Fprintf(w, "the server's time-travel index gives the same answer: %s\n", t.URL)
	default:
		fmt.Fprintf(w, "the server's time-travel index DIFFERS from the fold of the log: %s\n", t.URL)
	}

	fmt.Fprintf(w, "\n=== fleet replay --verify\n")
	if s.Verify.Passed {
		fmt.Fprintf(w, "verify: passed: %s\n", s.Verify.Summary)
	} else {
		fmt.Fprintf(w, "verify: FAILED: %s\n", s.Verify.Summary)
		for _, v := range s.Verify.Violations {
			fmt.Fprintln(w, "  "+v)
		}
	}
}
