package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
func jsonMarshal(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func validEvent(t *testing.T) events.Event {
	e, err := events.New("pi-01", "motd", 3, "agent:pi-01", &events.StatusChanged{Kind: "file", From: "Pending", To: "Reconciling", Trigger: "reconcile"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := events.NewClock(events.ClockState{}, nil)
	c.Stamp(&e)
	return e
}

func TestEnvelopeRoundTrip(t *testing.T) {
	is := is.New(t)
	e := validEvent(t)
	b, err := events.Encode(e)
	is.NoErr(err)
	// Readable by any NATS client: plain JSON with the documented names.
	for _, k := range []string{`"id":`, `"type":"StatusChanged"`, `"schema":1`, `"device":"pi-01"`, `"resource":"motd"`, `"generation":3`, `"at":`, `"actor":"agent:pi-01"`, `"data":{`} {
		is.True(strings.Contains(string(b), k))
	}
	got, err := events.Decode(b)
	is.NoErr(err)
	is.Equal(got.ID, e.ID)
	is.True(got.At.Equal(e.At))
	p, err := got.Payload()
	is.NoErr(err)
	is.Equal(p.(*events.StatusChanged).To, "Reconciling")
}

func TestDecodeRefusesMalformedEvents(t *testing.T) {
	e := validEvent(t)
	good, _ := events.Encode(e)
	mutate := func(f func(m map[string]any)) string {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := map[string]string{
		"truncated":        string(good[:len(good)/2]),
		"not json":         "hello",
		"trailing":         string(good) + "{}",
		"unknown field":    mutate(func(m map[string]any) { m["extra"] = 1 }),
		"unknown type":     mutate(func(m map[string]any) { m["type"] = "Exploded" }),
		"future schema":    mutate(func(m map[string]any) { m["schema"] = 99 }),
		"zero schema":      mutate(func(m map[string]any) { m["schema"] = 0 }),
		"bad id":           mutate(func(m map[string]any) { m["id"] = "not-a-ulid" }),
		"bad device":       mutate(func(m map[string]any) { m["device"] = "a.b" }),
		"missing resource": mutate(func(m map[string]any) { delete(m, "resource") }),
		"negative gen":     mutate(func(m map[string]any) { m["generation"] = -1 }),
		"no time":          mutate(func(m map[string]any) { delete(m, "at") }),
		"bad payload":      mutate(func(m map[string]any) { m["data"] = map[string]any{"to": "Exploded"} }),
		"payload of list":  mutate(func(m map[string]any) { m["data"] = []int{1} }),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			is := is.New(t)
			_, err := events.Decode([]byte(in))
			is.True(errors.Is(err, events.ErrInvalid))
		})
	}
}

// TestClockNeverRunsBackwards: with a wall clock that steps back (and a
// restart from persisted state), times and ids keep increasing.
func TestClockNeverRunsBackwards(t *testing.T) {
	is := is.New(t)
	wall := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return wall }
	c, err := events.NewClock(events.ClockState{}, now)
	is.NoErr(err)
	var lastAt time.Time
	var lastID string
	check := func(c *events.Clock) {
		at, id := c.Next()
		is.True(at.After(lastAt))
		is.True(id > lastID)
		lastAt, lastID = at, id
	}
	for i := 0; i < 100; i++ {
		check(c)
	}
	wall = wall.Add(-time.Hour) // NTP step, or a Pi booting without RTC
	for i := 0; i < 100; i++ {
		check(c)
	}
	restarted, err := events.NewClock(c.State(), now)
	is.NoErr(err)
	wall = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC) // no RTC at all
	for i := 0; i < 100; i++ {
		check(restarted)
	}
	wall = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	check(restarted)
	is.True(lastAt.Equal(wall)) // a sane clock is followed again
}

func TestIDRule(t *testing.T) {
	is := is.New(t)
	for _, ok := range []string{"pi-01", "A_b-9", strings.Repeat("x", 64)} {
		is.True(events.ValidID(ok))
	}
	for _, bad := range []string{"", "a.b", "*", ">", "a b", "a/b", strings.Repeat("x", 65), "ü"} {
		is.True(!events.ValidID(bad))
		err := events.CheckID("device", bad)
		is.True(errors.Is(err, events.ErrInvalid))
		is.True(strings.Contains(err.Error(), "one subject token"))
	}
}

// TestActorRule: events are created only with an actor that is user:NAME or
// agent:DEVICE; anything else is refused naming the rule.
func TestActorRule(t *testing.T) {
	is := is.New(t)
	for _, ok := range []string{"user:ops", "user:ops@site-1", "agent:pi-01", "user:a.b_c-d"} {
		is.NoErr(events.CheckActor(ok))
	}
	for _, bad := range []string{"", "ops", "user:", "robot:x", "user:two words", "user:a\nb", "user:" + strings.Repeat("x", 65)} {
		err := events.CheckActor(bad)
		is.True(errors.Is(err, events.ErrInvalid))
		is.True(strings.Contains(err.Error(), "actor"))
		_, err = events.New("pi-01", "", 1, bad, &events.DeviceDeregistered{})
		is.True(errors.Is(err, events.ErrInvalid)) // New refuses it too
	}
}

// TestActorNameFollowsTheRule: any login name becomes a name the actor
// rule takes, keeping what it allows.
func TestActorNameFollowsTheRule(t *testing.T) {
	is := is.New(t)
	is.Equal(events.ActorName(`DOMAIN\jo doe`), "DOMAIN_jo_doe")
	is.Equal(events.ActorName("ops@site-1.lab"), "ops@site-1.lab")
	for _, s := range []string{"", "é", strings.Repeat("x", 100), "a\nb", "user:x"} {
		is.NoErr(events.CheckActor("user:" + events.ActorName(s)))
	}
}
