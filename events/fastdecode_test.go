package events_test

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fixtures"
)

// sameAsStandard fails t if the fast decoder accepts b and gives anything
// but what encoding/json gives.
func sameAsStandard(t *testing.T, b []byte) (fast, fastPayload bool) {
	t.Helper()
	fe, fp, ok := events.FastDecode(b)
	if !ok {
		return false, false
	}
	var se events.Event
	if err := json.Unmarshal(b, &se); err != nil {
		t.Fatalf("fast decoder accepted what encoding/json refuses (%v): %q", err, b)
	}
	if !reflect.DeepEqual(fe, se) && string(must(json.Marshal(fe))) != string(must(json.Marshal(se))) {
		t.Fatalf("envelopes differ:\nfast %+v\n std %+v\ninput %q", fe, se, b)
	}
	if !fe.At.Equal(se.At) || fe.At.Location().String() != se.At.Location().String() {
		t.Fatalf("times differ: %v vs %v", fe.At, se.At)
	}
	if fp != nil {
		sp := reflect.New(reflect.TypeOf(fp).Elem()).Interface() // unchecked, as fastDecode returns it
		if err := json.Unmarshal(se.Data, sp); err != nil {
			t.Fatalf("fast payload accepted what encoding/json refuses (%v): %q", err, b)
		}
		if string(must(json.Marshal(fp))) != string(must(json.Marshal(sp))) {
			t.Fatalf("payloads differ:\nfast %+v\n std %+v", fp, sp)
		}
	}
	// and Decode, fast or not, answers as the standard decoder
	e1, p1, err1 := events.DecodeStandard(b)
	st, err2 := events.DecodeStored(b)
	if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
		t.Fatalf("errors differ: %v vs %v", err1, err2)
	}
	if err1 == nil {
		p2, _ := st.Payload()
		if string(must(json.Marshal(e1))) != string(must(json.Marshal(st.Event))) || string(must(json.Marshal(p1))) != string(must(json.Marshal(p2))) {
			t.Fatalf("DecodeStored differs from the standard decoder on %q", b)
		}
	}
	return true, fp != nil
}

func TestFastDecodeGivesTheStandardEventForEveryGeneratedEvent(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(5, fixtures.Options{Devices: 20, Events: 5000, UnknownKind: true, DriftRate: 0.2, OfflineRate: 0.05})
	fast, payloads := 0, 0
	for _, e := range evs {
		b, err := events.Encode(e)
		is.NoErr(err)
		f, p := sameAsStandard(t, b)
		if f {
			fast++
		}
		if p && (e.Type == events.TypeStatusChanged || e.Type == events.TypeReconcileAttempted || e.Type == events.TypeDriftDetected) {
			payloads++
		}
	}
	is.Equal(fast, len(evs)) // what fleet writes takes the fast path
	is.True(payloads > len(evs)/2)
}

func TestFastDecodeGivesUpOnWhatItDoesNotKnow(t *testing.T) {
	good := `{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","resource":"r1","generation":1,"at":"2025-01-01T00:00:00.124675475Z","actor":"agent:pi-002","data":{"kind":"file","from":"Pending","to":"Ready","trigger":"reconcile"}}`
	if f, p := sameAsStandard(t, []byte(good)); !f || !p {
		t.Fatal("the plain event should take the fast path")
	}
	for _, b := range []string{
		`{"ID":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","resource":"r1","generation":1,"at":"2025-01-01T00:00:00Z","actor":"a","data":{}}`, // case-folded key
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","id":"01JGFJJZ3WDBK7GFTFQQMHPVNS","type":"StatusChanged","schema":1,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{}}`,          // repeated key
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"Status\u0043hanged","schema":1,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{}}`,                                       // escape
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1.0,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{}}`,                                          // fraction
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","at":null,"data":{}}`,                                                              // null
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{"to":"Ready",}}`,                               // bad JSON inside data
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{}}}`,                                           // trailing
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-é","at":"2025-01-01T00:00:00Z","data":{}}`,                                              // non-ASCII
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":01,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":{}}`,                                           // leading zero
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","at":"2025-01-01T00:00:00Z","data":[]}`,                                            // data not an object
		`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","extra":1,"at":"2025-01-01T00:00:00Z","data":{}}`,                                  // unknown field
	} {
		if f, _ := sameAsStandard(t, []byte(b)); f {
			t.Errorf("fast path taken for %s", b)
		}
	}
}

func FuzzFastDecodeMatchesStandard(f *testing.F) {
	for _, e := range fixtures.GenerateLog(6, fixtures.Options{Devices: 3, Events: 60, UnknownKind: true}) {
		b, _ := events.Encode(e)
		f.Add(b)
	}
	f.Add([]byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"DriftDetected","schema":1,"device":"d","resource":"r","generation":2,"at":"2025-01-01T00:00:00Z","actor":"agent:d","data":{"kind":"file","differences":[{"field":"mode","expected":"0644","observed":"0600"},{"field":"x"}],"policy":"correct"}}`))
	f.Add([]byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"ReconcileAttempted","schema":1,"device":"d","resource":"r","generation":2,"at":"2025-01-01T00:00:00+02:00","actor":"agent:d","data":{"kind":"exec","attempt":2,"durationNs":-5,"outcome":"failed","exitCode":-1,"changed":true,"output":"x y"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsStandard(t, b)
	})
}

// TestFastDecodeMatchesStandardOnMutatedEvents runs the fuzz target's
// check over byte-level mutations of generated events (quick, seeded).
func TestFastDecodeMatchesStandardOnMutatedEvents(t *testing.T) {
	evs := fixtures.GenerateLog(7, fixtures.Options{Devices: 4, Events: 200, UnknownKind: true})
	rng := rand.New(rand.NewPCG(7, 7))
	alphabet := []byte(`{}[]",:\ 0123456789-.eEtrufalsn"u00e9` + "\t\n\xc3\xa9\x7f")
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := range n {
		b, _ := events.Encode(evs[i%len(evs)])
		for range 1 + rng.IntN(3) {
			j := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[j] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:j], b[j+1:]...)
			default:
				b = append(b[:j], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[j:]...)...)
			}
		}
		sameAsStandard(t, b)
	}
}
