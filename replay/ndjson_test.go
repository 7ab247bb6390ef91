package replay_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/replay"
)

func TestExportImportExportIsIdentical(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	src := eventstest.Start(t, true)
	evs := goodLog(t).evs
	is.NoErr(src.Store.AppendBatch(ctx, evs))

	var first bytes.Buffer
	n, err := replay.Export(&first, src.Store.Read(ctx, events.Filter{}))
	is.NoErr(err)
	is.Equal(n, len(evs))

	dst := eventstest.Start(t, true)
	imported, err := replay.Import(ctx, dst.Store, replay.ReadNDJSON(bytes.NewReader(first.Bytes())), nil)
	is.NoErr(err)
	is.Equal(imported, len(evs))

	var second bytes.Buffer
	_, err = replay.Export(&second, dst.Store.Read(ctx, events.Filter{}))
	is.NoErr(err)
	is.Equal(first.String(), second.String()) // byte-identical

	// ids, event times and order are kept; sequences are the new server's
	i := 0
	for s, err := range dst.Store.Read(ctx, events.Filter{}) {
		is.NoErr(err)
		is.Equal(s.ID, evs[i].ID)
		is.True(s.At.Equal(evs[i].At))
		is.Equal(s.Seq, uint64(i+1))
		i++
	}
	is.Equal(i, len(evs))

	// and the imported log verifies like the original file
	rep, err := replay.Verify(dst.Store.Read(ctx, events.Filter{}), true)
	is.NoErr(err)
	is.True(rep.OK())
}

func TestExportOfGoodFixtureMatchesFile(t *testing.T) {
	is := is.New(t)
	ctx := context.Background()
	want, err := os.ReadFile(filepath.Join(brokenDir, "good.ndjson"))
	is.NoErr(err)
	env := eventstest.Start(t, true)
	_, err = replay.Import(ctx, env.Store, replay.ReadNDJSON(bytes.NewReader(want)), nil)
	is.NoErr(err)
	var got bytes.Buffer
	_, err = replay.Export(&got, env.Store.Read(ctx, events.Filter{}))
	is.NoErr(err)
	is.Equal(got.String(), string(want))
}

func TestImportStopsAtBadLineNamingIt(t *testing.T) {
	is := is.New(t)
	data := mustRead(t, replay.ViolationUndecodable+".ndjson")
	env := eventstest.Start(t, true)
	_, err := replay.Import(context.Background(), env.Store, replay.ReadNDJSON(bytes.NewReader(data)), nil)
	is.True(errors.Is(err, events.ErrInvalid))
	var bm *events.BadMessage
	is.True(errors.As(err, &bm))
	is.Equal(bm.Seq, uint64(31)) // the line
}

// A `fleet replay -o ndjson` dump reads like an export, keeping its sequences.
func TestReadNDJSONReadsReplayLines(t *testing.T) {
	is := is.New(t)
	evs := goodLog(t).evs
	var dump bytes.Buffer
	for i, e := range evs {
		s := events.Stored{Event: e, Seq: uint64(100 + i), StreamTime: e.At.Add(5e9), Subject: "fleet.x"}
		dump.Write(append(events.AppendStoredJSON(nil, s), '\n'))
	}
	i := 0
	for s, err := range replay.ReadNDJSON(&dump) {
		is.NoErr(err)
		is.Equal(s.ID, evs[i].ID)
		is.Equal(s.Seq, uint64(100+i))
		is.True(s.StreamTime.Equal(evs[i].At.Add(5e9)))
		i++
	}
	is.Equal(i, len(evs))
	// an unknown field is still refused
	bad := `{"id":"01KQHPJ3BG7KZMQDZ51H8TDPVD","seq":3,"bogus":1}`
	for _, err := range replay.ReadNDJSON(bytes.NewReader([]byte(bad))) {
		is.True(errors.Is(err, events.ErrInvalid))
	}
}
