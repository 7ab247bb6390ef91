package rollout

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func TestTableAllowsOnlyItsRows(t *testing.T) {
	decisions := []string{events.TypeRolloutStarted, events.TypeWaveStarted, events.TypeWavePassed, events.TypeWaveFailed,
		events.TypeRolloutPaused, events.TypeRolloutResumed, events.TypeRolloutAborted, events.TypeRolloutRolledBack,
		events.TypeRolloutSucceeded, events.TypeRolloutSuperseded}
	want := map[string]string{}
	for _, r := range Table {
		want[r.From+" "+r.Event] = r.To
	}
	for _, from := range []string{"", Running, Failing, Paused, Aborted, RolledBack, Succeeded, Superseded} {
		for _, d := range decisions {
			to, err := Next(from, d)
			if w, ok := want[from+" "+d]; ok {
				if err != nil || to != w {
					t.Errorf("%q %s: got %q %v, want %q", from, d, to, err, w)
				}
				continue
			}
			if err == nil {
				t.Errorf("%q %s: allowed to %q, the table has no such row", from, d, to)
			} else if !strings.Contains(err.Error(), "the rollout table allows") {
				t.Errorf("error does not say what is allowed: %v", err)
			}
		}
		if Terminal(from) {
			for _, d := range decisions {
				if _, err := Next(from, d); err == nil {
					t.Errorf("terminal %s allows %s", from, d)
				}
			}
		}
	}
}

func devices(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("pi-%03d", i))
	}
	return out
}

// TestPlanIsDeterministicAndCumulative: 5%,25%,100% of 60 devices are waves
// of 3, 12 and 45; the same ids give the same waves whatever the order the
// devices come in; another rollout id gives other members.
func TestPlanIsDeterministicAndCumulative(t *testing.T) {
	is := is.New(t)
	ws := []string{"5%", "25%", "100%"}
	is.NoErr(ParseWaves(ws))
	ds := devices(60)
	p := Plan("r1", ds, ws)
	is.Equal([]int{len(p[0]), len(p[1]), len(p[2])}, []int{3, 12, 45})
	rev := slices.Clone(ds)
	slices.Reverse(rev)
	is.Equal(Plan("r1", rev, ws), p)
	var all []string
	for _, w := range p {
		all = append(all, w...)
	}
	slices.Sort(all)
	is.Equal(all, ds) // every device once
	is.True(!slices.Equal(Plan("r2", ds, ws)[0], p[0]))

	q := Plan("r1", devices(5), []string{"1", "10%", "50%", "100%"})
	is.Equal([]int{len(q[0]), len(q[1]), len(q[2]), len(q[3])}, []int{1, 0, 2, 2}) // 10% of 5 rounds up to 1: no new device
}

func TestParseWavesNamesTheRule(t *testing.T) {
	for _, ws := range [][]string{{}, {"50%"}, {"0%", "100%"}, {"50%", "20%", "100%"}, {"x", "100%"}, {"-1", "100%"}, {"101%"}} {
		err := ParseWaves(ws)
		if err == nil || !strings.Contains(err.Error(), "cumulative sizes") {
			t.Errorf("%v: %v", ws, err)
		}
	}
}

// rlog builds a rollout's events, numbered as the stream would.
type rlog struct {
	t     *testing.T
	clock *events.Clock
	seq   uint64
}

func (l *rlog) ev(device string, p events.Payload) events.Stored {
	e, err := events.New(device, "r1", 0, "user:ops", p)
	if err != nil {
		l.t.Fatal(err)
	}
	l.clock.Stamp(&e)
	if err := e.Check(); err != nil {
		l.t.Fatal(err)
	}
	l.seq++
	subj, err := events.SubjectFor(e)
	if err != nil {
		l.t.Fatal(err)
	}
	return events.Stored{Event: e, Seq: l.seq, Subject: subj}
}

// TestFoldChecksMembershipAndTargetsOnce: the fold refuses a wave whose
// members are not the hash's, a device targeted twice or outside its wave,
// targeting while paused, and a wave started before the one before passed.
func TestFoldChecksMembershipAndTargetsOnce(t *testing.T) {
	is := is.New(t)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	l := &rlog{t: t, clock: clock}
	ds := devices(20)
	ws := []string{"10%", "100%"}
	plan := Plan("r1", ds, ws)
	x := NewSet()
	is.NoErr(x.Apply(l.ev("", &events.RolloutStarted{Selector: "site=lab", Waves: ws, Devices: ds, MaxFailures: 2, OnFailure: events.OnFailurePause})))
	bad := slices.Clone(plan[0])
	bad[0] = plan[1][0]
	err := x.Apply(l.ev("", &events.WaveStarted{Wave: 0, Devices: bad}))
	is.True(err != nil && strings.Contains(err.Error(), "membership"))
	is.NoErr(x.Apply(l.ev("", &events.WaveStarted{Wave: 0, Devices: plan[0]})))
	err = x.Apply(l.ev(plan[1][0], &events.DeviceTargeted{Wave: 0, Generation: 1}))
	is.True(err != nil && strings.Contains(err.Error(), "not a member of wave 0"))
	is.NoErr(x.Apply(l.ev(plan[0][0], &events.DeviceTargeted{Wave: 0, Generation: 1})))
	err = x.Apply(l.ev(plan[0][0], &events.DeviceTargeted{Wave: 0, Generation: 2}))
	is.True(err != nil && strings.Contains(err.Error(), "targets a device once"))
	err = x.Apply(l.ev("", &events.WaveStarted{Wave: 1, Devices: plan[1]}))
	is.True(err != nil && strings.Contains(err.Error(), "once wave 0 passed"))
	is.NoErr(x.Apply(l.ev("new-1", &events.DeviceTargeted{Wave: 0, Generation: 1, Joined: true})))
	is.NoErr(x.Apply(l.ev("", &events.RolloutPaused{Reason: "operator"})))
	err = x.Apply(l.ev(plan[0][1], &events.DeviceTargeted{Wave: 0, Generation: 1}))
	is.True(err != nil && strings.Contains(err.Error(), "only while Running"))
	err = x.Apply(l.ev("", &events.RolloutSucceeded{Devices: 20}))
	is.True(err != nil && strings.Contains(err.Error(), "the rollout table allows"))
	is.NoErr(x.Apply(l.ev("", &events.WavePassed{Wave: 0, Promoted: true})))
	is.NoErr(x.Apply(l.ev("", &events.RolloutResumed{})))
	is.NoErr(x.Apply(l.ev("", &events.WaveStarted{Wave: 1, Devices: plan[1]})))
	is.NoErr(x.Apply(l.ev("", &events.WavePassed{Wave: 1})))
	is.NoErr(x.Apply(l.ev("", &events.RolloutSucceeded{Devices: 21})))
	r, _ := x.Get("r1")
	is.Equal(r.State, Succeeded)
	is.Equal(len(r.Targeted), 2)
	is.True(slices.Contains(r.Waves[0], "new-1")) // joined the wave in progress
	err = x.Apply(l.ev("", &events.RolloutAborted{}))
	is.True(err != nil && strings.Contains(err.Error(), "has ended"))
}
