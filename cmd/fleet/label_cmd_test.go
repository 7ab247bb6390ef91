package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/projections/api"
)

// labelFleet starts a server (NATS, projections, HTTP) and registers
// devices with the agent labels given, as their agents would.
func labelFleet(t *testing.T, devices map[string]map[string]string) (*jsstore.Store, *RunningServer, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rs, err := (&ServerCmd{Data: filepath.Join(t.TempDir(), "server"), Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0",
		RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Start(ctx, &Globals{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)
	nc, err := nats.Connect(rs.Env.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	st, err := jsstore.Attach(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	for dev, labels := range devices {
		e, err := events.New(dev, "", 0, "agent:"+dev, events.DeviceRegistered{AgentVersion: "test", Labels: labels, Kinds: []string{"file"}})
		if err != nil {
			t.Fatal(err)
		}
		clock, _ := events.NewClock(events.ClockState{}, nil)
		clock.Stamp(&e)
		if _, _, err := st.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return st, rs, "--nats=" + rs.Env.NATSURL
}

// waitCaughtUp waits until the projection service has folded the whole log.
func waitCaughtUp(t *testing.T, st *jsstore.Store, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl := api.NewClient(nc)
	ctx := context.Background()
	last, err := st.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		s, err := cl.Status(ctx)
		if err == nil && s.Checkpoint >= last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("projections did not catch up to %d: %+v %v", last, s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func deviceIDs(t *testing.T, out string) []string {
	t.Helper()
	var ds []struct {
		Device string `json:"device"`
	}
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var ids []string
	for _, d := range ds {
		ids = append(ids, d.Device)
	}
	return ids
}

// TestLabelSelectorGetAndApply: labels from the agent and from 'fleet
// label' merged (the control plane wins), 'fleet get devices --selector'
// over NATS and HTTP, 'fleet apply --selector' to every matching device
// with its own compare-and-set generation and a per-device report, and a
// bad selector refused naming the rule (exit 2, nothing written).
func TestLabelSelectorGetAndApply(t *testing.T) {
	is := is.New(t)
	st, rs, natsFlag := labelFleet(t, map[string]map[string]string{
		"pi-01": {"site": "lab", "role": "kiosk"},
		"pi-02": {"site": "lab", "role": "sign"},
		"pi-03": {"site": "lab", "role": "kiosk", "canary": "yes"},
		"pi-04": {"site": "berlin", "role": "kiosk"},
		"pi-05": {"site": "lab", "role": "desk"},
	})
	t.Setenv("FLEET_ACTOR", "ops")

	// the control plane: pi-05 becomes a sign, pi-03 leaves the canaries
	out, code := replayCLI(t, "label", "pi-05", "role=sign", natsFlag)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "device pi-05: labels role=sign"))
	out, code = replayCLI(t, "label", "pi-03", "canary-", "ring=1", "-o", "json", natsFlag)
	is.Equal(code, 0)
	var lj struct {
		Remove []string `json:"remove"`
		Seq    uint64   `json:"seq"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &lj))
	is.Equal(lj.Remove, []string{"canary"})
	_, code = replayCLI(t, "label", "pi-03", "bad.key=x", natsFlag)
	is.Equal(code, 2)
	_, code = replayCLI(t, "label", "pi-03", "noequals", natsFlag)
	is.Equal(code, 2)
	waitCaughtUp(t, st, rs.Env.NATSURL)

	sel := "site=lab,role in (kiosk,sign),!canary"
	out, code = replayCLI(t, "get", "devices", "--selector", sel, "-o", "json", natsFlag)
	is.Equal(code, 0)
	is.Equal(deviceIDs(t, out), []string{"pi-01", "pi-02", "pi-03", "pi-05"})
	out, code = replayCLI(t, "get", "devices", "-l", "ring=1", natsFlag)
	is.Equal(code, 0)
	is.True(strings.Contains(out, "pi-03 "))
	is.True(!strings.Contains(out, "pi-01 "))

	// HTTP: the same filter
	resp, err := http.Get("http://" + rs.Env.HTTPAddr + "/api/devices?selector=" + url.QueryEscape(sel))
	is.NoErr(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, 200)
	var page api.DevicePage
	is.NoErr(json.Unmarshal(body, &page))
	is.Equal(page.Total, 4)
	resp, err = http.Get("http://" + rs.Env.HTTPAddr + "/api/devices?selector=" + url.QueryEscape("role in (kiosk"))
	is.NoErr(err)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, 400)
	is.True(strings.Contains(string(body), "must be comma-separated requirements"))

	// a bad selector: refused before anything is written, naming the rule
	manifest := filepath.Join(t.TempDir(), "m.yaml")
	is.NoErr(os.WriteFile(manifest, []byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\", mode: \"0644\"}\n"), 0o600))
	before, _ := st.LastSeq(context.Background())
	_, code = replayCLI(t, "apply", "-f", manifest, "--selector", "role in (kiosk", natsFlag)
	is.Equal(code, 2)
	_, code = replayCLI(t, "get", "devices", "--selector", "=x", natsFlag)
	is.Equal(code, 2)
	after, _ := st.LastSeq(context.Background())
	is.Equal(before, after)

	// pi-02 already has generation 1 from someone else: it gets its own generation 2
	_, code = replayCLI(t, "apply", "-f", "../../fixtures/manifests/basic.yaml", "--device", "pi-02", natsFlag)
	is.Equal(code, 0)
	waitCaughtUp(t, st, rs.Env.NATSURL)
	out, code = replayCLI(t, "apply", "-f", manifest, "--selector", sel, "-o", "json", natsFlag)
	is.Equal(code, 0)
	var res struct {
		Devices []SelectorApplied `json:"devices"`
	}
	is.NoErr(json.Unmarshal([]byte(out), &res))
	is.Equal(len(res.Devices), 4)
	gens := map[string]int64{}
	for _, r := range res.Devices {
		is.Equal(r.Result, appliedNew)
		gens[r.Device] = r.Generation
		lm, err := st.LastManifest(context.Background(), r.Device)
		is.NoErr(err)
		is.Equal(lm.Seq, r.Seq) // on the log, compare-and-set on its own subject
	}
	is.Equal(gens, map[string]int64{"pi-01": 1, "pi-02": 2, "pi-03": 1, "pi-05": 1})
	_, err = st.LastManifest(context.Background(), "pi-04") // outside the selector: untouched
	is.True(err != nil)

	// again: every device already has it, table per device
	waitCaughtUp(t, st, rs.Env.NATSURL)
	out, code = replayCLI(t, "apply", "-f", manifest, "--selector", sel, natsFlag)
	is.Equal(code, 0)
	is.Equal(strings.Count(out, " already "), 4)
	_, code = replayCLI(t, "apply", "-f", manifest, "--selector", "site=nowhere", natsFlag)
	is.Equal(code, 1)
}
