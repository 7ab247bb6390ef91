package projections

import (
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

func TestDeviceNoAgentEverReportedFromIsNotReady(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(i int, res string, gen int64, actor string, p events.Payload) events.Stored {
		e := must(events.New("pi-01", res, gen, actor, p))
		e.At = at.Add(time.Duration(i) * time.Second)
		e.ID = fixtureID(i)
		return events.Stored{Event: e, Seq: uint64(i)}
	}
	empty := events.Manifest{Resources: []events.Resource{}}
	motd := events.Manifest{Resources: []events.Resource{{ID: "motd", Kind: events.KindFile, File: &events.FileSpec{Path: "/etc/motd", Content: "hi"}}}}
	cond := func(d Device, typ string) Condition {
		c, _ := d.Condition(typ)
		return c
	}

	t.Run("empty manifest, no agent", func(t *testing.T) {
		is := is.New(t)
		f := NewFleet()
		f.Apply(mk(1, "", 1, "user:ann", events.ManifestApplied{Manifest: empty, Digest: empty.Digest()}))
		d, _ := f.Device("pi-01")
		is.Equal(d.Generation, int64(1))
		is.Equal(d.ObservedGeneration, int64(0)) // nobody observed it
		is.Equal(cond(d, CondReady).Status, False)
		is.Equal(cond(d, CondReady).Reason, "AwaitingAgent")
		is.Equal(cond(d, CondProgressing).Status, False) // nothing moves without an agent
		is.Equal(cond(d, CondProgressing).Reason, "AwaitingAgent")

		// the agent registers: the empty manifest is observed, and Ready
		f.Apply(mk(2, "", 1, "agent:pi-01", events.DeviceRegistered{AgentVersion: "1", Kinds: []string{"file"}}))
		d, _ = f.Device("pi-01")
		is.Equal(d.ObservedGeneration, int64(1))
		is.Equal(cond(d, CondReady).Status, True)
		is.Equal(cond(d, CondReady).Reason, "AllResourcesReady")
		is.Equal(cond(d, CondProgressing).Reason, "Settled")
	})

	t.Run("resources, no agent", func(t *testing.T) {
		is := is.New(t)
		f := NewFleet()
		f.Apply(mk(1, "", 1, "user:ann", events.ManifestApplied{Manifest: motd, Digest: motd.Digest()}))
		d, _ := f.Device("pi-01")
		is.Equal(d.ObservedGeneration, int64(0))
		is.Equal(cond(d, CondReady).Reason, "AwaitingAgent")
		is.Equal(cond(d, CondProgressing).Reason, "AwaitingAgent")
	})

	t.Run("agent seen before an empty manifest", func(t *testing.T) {
		is := is.New(t)
		f := NewFleet()
		f.Apply(mk(1, "", 0, "agent:pi-01", events.DeviceRegistered{AgentVersion: "1", Kinds: []string{"file"}}))
		f.Apply(mk(2, "", 1, "user:ann", events.ManifestApplied{Manifest: empty, Digest: empty.Digest()}))
		d, _ := f.Device("pi-01")
		is.Equal(d.ObservedGeneration, int64(1)) // a running agent has nothing to do for it
		is.Equal(cond(d, CondReady).Status, True)
	})

	t.Run("the rule survives persisting", func(t *testing.T) {
		is := is.New(t)
		f := NewFleet()
		f.Apply(mk(1, "", 1, "user:ann", events.ManifestApplied{Manifest: empty, Digest: empty.Digest()}))
		b, ok := f.MarshalDevice("pi-01")
		is.True(ok)
		g := NewFleet()
		is.NoErr(g.LoadDevice(b))
		g.Apply(mk(2, "", 1, "agent:pi-01", events.DeviceRegistered{AgentVersion: "1"}))
		d, _ := g.Device("pi-01")
		is.Equal(d.ObservedGeneration, int64(1))
	})
}
