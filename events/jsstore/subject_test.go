package jsstore

import (
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
)

func TestOnSubjectAgreesWithSubjectFor(t *testing.T) {
	is := is.New(t)
	for _, e := range fixtures.GenerateLog(3, fixtures.Options{Devices: 3, Events: 400, UnknownKind: true}) {
		subj, err := events.SubjectFor(e)
		is.NoErr(err)
		is.True(onSubject(e, subj)) // the subject SubjectFor gives
		for _, other := range []string{
			subj + ".x", subj + "x", subj[:len(subj)-1], "x" + subj, "fleet." + e.Device + "x" + subj[len("fleet."+e.Device):],
			"fleet." + e.Device, "fleet." + e.Device + ".", "fleet.other.manifest", "fleet." + e.Device + ".lifecycle.r",
			"fleet." + e.Device + ".status", "fleet." + e.Device + ".status.", "fleet." + e.Device + ".attempt.r.s",
		} {
			want, _ := events.SubjectFor(e)
			is.Equal(onSubject(e, other), other == want) // and no other
		}
	}
	is.True(!onSubject(events.Event{Type: "Unknown", Device: "d"}, "fleet.d.manifest"))
}
