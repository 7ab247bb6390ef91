package projections

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

// labelLog builds a log of (actor, payload) events of device pi-01, numbered
// as the stream would.
func labelLog(t *testing.T, steps ...events.Payload) []events.Stored {
	t.Helper()
	clock, _ := events.NewClock(events.ClockState{}, nil)
	var out []events.Stored
	for i, p := range steps {
		actor := "agent:pi-01"
		if p.EventType() == events.TypeDeviceLabeled {
			actor = "user:ops"
		}
		e, err := events.New("pi-01", "", 0, actor, p)
		if err != nil {
			t.Fatal(err)
		}
		clock.Stamp(&e)
		out = append(out, events.Stored{Event: e, Seq: uint64(i + 1), Subject: must(events.SubjectFor(e)), StreamTime: time.Now()})
	}
	return out
}

// TestDeviceLabelsMergeAgentAndControlPlaneTheControlPlaneWins pins the
// documented merge: the agent's labels, then the control plane's set keys
// over them and its removed keys hidden, also after the agent registers
// again; a key set again comes back.
func TestDeviceLabelsMergeAgentAndControlPlaneTheControlPlaneWins(t *testing.T) {
	is := is.New(t)
	log := labelLog(t,
		&events.DeviceRegistered{AgentVersion: "1", Labels: map[string]string{"site": "lab", "role": "kiosk", "canary": "yes"}},
		&events.DeviceLabeled{Set: map[string]string{"role": "sign", "ring": "2"}, Remove: []string{"canary"}},
		&events.DeviceRegistered{AgentVersion: "2", Labels: map[string]string{"site": "berlin", "role": "kiosk", "canary": "yes"}},
	)
	f := NewFleet()
	for _, e := range log {
		f.Apply(e)
	}
	d, ok := f.Device("pi-01")
	is.True(ok)
	is.Equal(d.Labels, map[string]string{"site": "berlin", "role": "sign", "ring": "2"})

	// a redelivered DeviceLabeled changes nothing; a new one does
	f.Apply(log[1])
	more := labelLog(t, &events.DeviceLabeled{Set: map[string]string{"canary": "no"}, Remove: []string{"ring"}})
	more[0].Seq = 10
	f.Apply(more[0])
	d, _ = f.Device("pi-01")
	is.Equal(d.Labels, map[string]string{"site": "berlin", "role": "sign", "canary": "no"})
	is.Equal(len(f.Skipped()), 0)

	// the fold of the log from a snapshot gives the same labels (persisted state)
	g := NewFleet()
	for _, e := range append(log, more...) {
		g.Apply(e)
	}
	d2, _ := g.Device("pi-01")
	is.Equal(d2.Labels, d.Labels)
}

// TestDeviceLabeledByAnAgentIsForgedAndNotFolded: only the control plane
// labels a device from outside; an agent claiming it is refused.
func TestDeviceLabeledByAnAgentIsForgedAndNotFolded(t *testing.T) {
	is := is.New(t)
	log := labelLog(t, &events.DeviceRegistered{AgentVersion: "1", Labels: map[string]string{"site": "lab"}})
	e, _ := events.New("pi-01", "", 0, "agent:pi-01", events.DeviceLabeled{Set: map[string]string{"site": "evil"}})
	clock, _ := events.NewClock(events.ClockState{}, nil)
	clock.Stamp(&e)
	f := NewFleet()
	f.Apply(log[0])
	f.Apply(events.Stored{Event: e, Seq: 2, Subject: events.LabelsSubject("pi-01")})
	d, _ := f.Device("pi-01")
	is.Equal(d.Labels["site"], "lab")
	is.Equal(f.Forged(), 1)
}

func TestSelectorParsesKubernetesSyntaxAndMatchesLabels(t *testing.T) {
	is := is.New(t)
	sel, err := ParseSelector("site=lab,role in (kiosk,sign),!canary")
	is.NoErr(err)
	for _, c := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"site": "lab", "role": "kiosk"}, true},
		{map[string]string{"site": "lab", "role": "sign", "x": "y"}, true},
		{map[string]string{"site": "lab", "role": "sign", "canary": ""}, false},
		{map[string]string{"site": "lab", "role": "desk"}, false},
		{map[string]string{"site": "berlin", "role": "kiosk"}, false},
		{nil, false},
	} {
		is.Equal(sel.Matches(c.labels), c.want)
	}
	for _, s := range []struct {
		sel    string
		labels map[string]string
		want   bool
	}{
		{"site!=lab", map[string]string{"site": "berlin"}, true},
		{"site notin (lab,berlin)", map[string]string{"site": "berlin"}, false},
		{"ring", map[string]string{"ring": "1"}, true},
		{"site==lab", map[string]string{"site": "lab"}, true},
		{"", nil, true},
	} {
		x, err := ParseSelector(s.sel)
		is.NoErr(err)
		is.Equal(x.Matches(s.labels), s.want)
	}
}

func TestSelectorRefusesBadSyntaxNamingTheRule(t *testing.T) {
	for _, s := range []string{"site=", "role in (kiosk", "=lab", "site=lab,,", "a b=c", "site=la b"} {
		t.Run(s, func(t *testing.T) {
			is := is.New(t)
			_, err := ParseSelector(s)
			if s == "site=" { // an empty value is allowed by the grammar
				is.NoErr(err)
				return
			}
			is.True(err != nil)
			is.True(errors.Is(err, events.ErrInvalid))
			is.True(strings.Contains(err.Error(), "must be comma-separated requirements"))
		})
	}
}
