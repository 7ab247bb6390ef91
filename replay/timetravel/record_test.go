package timetravel

import (
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
)

// TestRecordKeepsTheWriter: an event record keeps every field of the
// envelope, also the writer and its sequence the folds deduplicate on.
func TestRecordKeepsTheWriter(t *testing.T) {
	for i, e := range fixtures.GenerateLog(4, fixtures.Options{Devices: 1, Events: 50}) {
		if i%2 == 0 {
			e.Writer, e.WriterSeq = "01JD2B3C4D5E6F7G8H9JAKBMCN", uint64(i+1)
		}
		s := events.Stored{Event: e, Seq: uint64(i + 1), StreamTime: time.Unix(1700000000, int64(i)).UTC()}
		s.Subject, _ = events.SubjectFor(e)
		got, err := decodeRecord(appendRecord(nil, s))
		if err != nil {
			t.Fatal(err)
		}
		if got.Writer != s.Writer || got.WriterSeq != s.WriterSeq || got.ID != s.ID || got.Seq != s.Seq ||
			!got.StreamTime.Equal(s.StreamTime) || !got.At.Equal(s.At) || got.Subject != s.Subject || string(got.Data) != string(s.Data) {
			t.Fatalf("event %d: record gives %+v, want %+v", i, got, s)
		}
	}
}
