package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/replay"
)

// TestHostileEventsOnTheLogAreReportedAndSkipped puts messages on the log
// that are not valid events (anyone with publish rights on fleet.> could):
// malformed, truncated, of an unknown type, of an unknown schema version,
// forged for another device, empty, binary. The store's reader, replay's
// verifier and the projection service each report every one with its
// sequence, skip it, and go on with the good events around it.
func TestHostileEventsOnTheLogAreReportedAndSkipped(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	ctx := context.Background()
	evs := fixtures.GenerateLog(5, fixtures.Options{Devices: 3, Events: 300})
	is.NoErr(env.Store.AppendBatch(ctx, evs[:150]))

	var good events.Event
	for _, e := range evs {
		if e.Type == events.TypeStatusChanged {
			good = e
			break
		}
	}
	goodJSON, err := json.Marshal(good)
	is.NoErr(err)
	subject, _ := events.SubjectFor(good)
	other := good
	other.Device = "pi-999"
	otherJSON, _ := json.Marshal(other)
	clock, _ := events.NewClock(events.ClockState{LastAt: time.Now()}, nil)
	fresh := func(b []byte) []byte { // a new id, so the stream does not drop it as a duplicate
		_, id := clock.Next()
		return bytes.Replace(b, []byte(good.ID), []byte(id), 1)
	}
	hostile := []struct {
		name string
		data []byte
	}{
		{"malformed", []byte(`{"id":`)},
		{"truncated", fresh(goodJSON)[:len(goodJSON)/2]},
		{"unknown type", bytes.Replace(fresh(goodJSON), []byte(`"type":"StatusChanged"`), []byte(`"type":"Teleported"`), 1)},
		{"unknown schema", bytes.Replace(fresh(goodJSON), []byte(`"schema":1`), []byte(`"schema":99`), 1)},
		{"forged for another device", fresh(otherJSON)},
		{"empty", []byte{}},
		{"binary", []byte{0, 0xff, 0xfe, '{'}},
		{"unknown envelope field", bytes.Replace(fresh(goodJSON), []byte(`{`), []byte(`{"admin":true,`), 1)},
	}
	var badSeqs []uint64
	for _, h := range hostile {
		ack, err := env.JS.Publish(ctx, subject, h.data)
		is.NoErr(err)
		badSeqs = append(badSeqs, ack.Sequence)
	}
	is.NoErr(env.Store.AppendBatch(ctx, evs[150:]))
	last, err := env.Store.LastSeq(ctx)
	is.NoErr(err)

	// the store's reader: a BadMessage with its sequence for each, the good events all there
	var reported []uint64
	goodRead := 0
	for _, err := range env.Store.Read(ctx, events.Filter{}) {
		var bm *events.BadMessage
		switch {
		case errors.As(err, &bm):
			is.True(errors.Is(err, events.ErrInvalid))
			reported = append(reported, bm.Seq)
		case err != nil:
			t.Fatal(err)
		default:
			goodRead++
		}
	}
	is.Equal(reported, badSeqs)
	is.Equal(goodRead, len(evs))

	// replay's verifier: one undecodable violation per message, at its sequence
	rep, err := replay.Verify(env.Store.Read(ctx, events.Filter{}), true)
	is.NoErr(err)
	var undecodable []uint64
	for _, v := range rep.Violations {
		if v.Kind == replay.ViolationUndecodable {
			undecodable = append(undecodable, v.Seq)
		}
	}
	is.Equal(undecodable, badSeqs)
	is.Equal(rep.Events, len(evs))

	// the projection service: skips each, records its sequence, folds the rest
	svc, err := projections.Open(t.TempDir())
	is.NoErr(err)
	defer svc.Close()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(sctx, env.Store) }()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	is.NoErr(svc.WaitFor(wctx, last))
	cancel()
	is.NoErr(<-done)
	is.Equal(svc.Stats().Skipped, uint64(len(hostile)))
	dump, err := svc.Dump()
	is.NoErr(err)
	for _, seq := range badSeqs {
		_, ok := dump[fmt.Sprintf("s/%020d", seq)]
		is.True(ok) // recorded with its sequence
	}
	devs := svc.Devices()
	is.Equal(len(devs), 3) // the forged device is not in the read models
	is.True(!slices.ContainsFunc(devs, func(d projections.Device) bool { return d.Device == "pi-999" }))
}
