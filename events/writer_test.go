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

// The envelope's writer and wseq come back from the wire as written, by
// the fast decoder and the standard one alike; one without the other, or a
// writer that is not a ULID, is refused naming the field.
func TestWriterFieldsDecodeAndAreChecked(t *testing.T) {
	is := is.New(t)
	clock, err := events.NewClock(events.ClockState{Writer: events.NewWriter()}, nil)
	is.NoErr(err)
	e, err := events.New("pi-01", "motd", 1, "agent:pi-01", &events.StatusChanged{Kind: "file", From: "", To: "Pending", Trigger: "specChanged"})
	is.NoErr(err)
	clock.Stamp(&e)
	is.Equal(e.WriterSeq, uint64(1))
	b, err := events.Encode(e)
	is.NoErr(err)
	got, err := events.Decode(b)
	is.NoErr(err)
	is.Equal(got.Writer, e.Writer)
	is.Equal(got.WriterSeq, uint64(1))
	clock.Stamp(&e)
	is.Equal(e.WriterSeq, uint64(2))

	var m map[string]any
	is.NoErr(json.Unmarshal(b, &m))
	for name, change := range map[string]func(map[string]any){
		"wseq":   func(m map[string]any) { delete(m, "wseq") },
		"writer": func(m map[string]any) { m["writer"] = "not-a-ulid" },
		"both":   func(m map[string]any) { delete(m, "writer") },
	} {
		c := map[string]any{}
		for k, v := range m {
			c[k] = v
		}
		change(c)
		bad, _ := json.Marshal(c)
		_, err := events.Decode(bad)
		if !errors.Is(err, events.ErrInvalid) || !strings.Contains(err.Error(), "writer") {
			t.Errorf("%s: %v", name, err)
		}
	}

	// a clock that corrects an offset runs back only with a writer
	ahead := time.Now().Add(time.Hour)
	c, _ := events.NewClock(events.ClockState{LastAt: ahead, Writer: events.NewWriter()}, nil)
	last, ranBack := c.Correct(0, time.Minute)
	is.True(ranBack)
	is.Equal(last, ahead)
	at, _ := c.Next()
	is.True(at.Before(ahead))
	c, _ = events.NewClock(events.ClockState{LastAt: ahead}, nil)
	_, ranBack = c.Correct(0, time.Minute)
	is.True(!ranBack)
	at, _ = c.Next()
	is.True(at.After(ahead))
}
