package events

import (
	"strings"
	"testing"

	"github.com/matryer/is"
)

func labeled(t *testing.T, actor string, p DeviceLabeled) Event {
	t.Helper()
	e, err := New("pi-01", "", 0, actor, p)
	if err != nil {
		t.Fatal(err)
	}
	clock, _ := NewClock(ClockState{}, nil)
	clock.Stamp(&e)
	return e
}

// TestDeviceLabeledLivesOnItsOwnSubjectWrittenByTheControlPlane: labels
// set by an operator go on fleet.<device>.labels; a user may write them,
// an agent (even the device's own) may not: its labels are DeviceRegistered's.
func TestDeviceLabeledLivesOnItsOwnSubjectWrittenByTheControlPlane(t *testing.T) {
	is := is.New(t)
	e := labeled(t, "user:ops", DeviceLabeled{Set: map[string]string{"site": "lab"}, Remove: []string{"canary"}})
	is.NoErr(e.Check())
	subj, err := SubjectFor(e)
	is.NoErr(err)
	is.Equal(subj, "fleet.pi-01.labels")
	is.True(WrittenByItsWriter(e))
	is.NoErr(CheckWriter(Stored{Event: e, Subject: subj}))

	a := labeled(t, "agent:pi-01", DeviceLabeled{Set: map[string]string{"site": "lab"}})
	is.True(!WrittenByItsWriter(a))
	err = CheckWriter(Stored{Event: a, Subject: subj})
	is.True(err != nil && strings.Contains(err.Error(), "only the control plane (user:NAME) writes there"))

	// a registered agent still writes only its own lifecycle subject
	r, _ := New("pi-01", "", 0, "user:ops", DeviceRegistered{AgentVersion: "x"})
	is.True(!WrittenByItsWriter(r))
	b, err := Encode(e)
	is.NoErr(err)
	back, err := Decode(b)
	is.NoErr(err)
	p, err := back.Payload()
	is.NoErr(err)
	is.Equal(p.(*DeviceLabeled).Set["site"], "lab")
}

func TestDeviceLabeledRefusesBadLabelsNamingTheRule(t *testing.T) {
	for _, c := range []struct {
		name string
		p    DeviceLabeled
		want string
	}{
		{"empty", DeviceLabeled{}, "at least one label"},
		{"bad key", DeviceLabeled{Set: map[string]string{"a.b": "x"}}, `label key "a.b": must be 1 to 64 characters`},
		{"long value", DeviceLabeled{Set: map[string]string{"k": strings.Repeat("v", 257)}}, "value: must be at most 256 bytes"},
		{"bad removal", DeviceLabeled{Remove: []string{"a b"}}, `label key "a b"`},
		{"both", DeviceLabeled{Set: map[string]string{"k": "v"}, Remove: []string{"k"}}, "both set and removed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			e := labeled(t, "user:ops", c.p)
			err := e.Check()
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), c.want)) // names the field and the rule
		})
	}
}
