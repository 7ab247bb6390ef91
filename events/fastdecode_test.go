package events_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
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
		if string(must(json.Marshal(fp))) != string(must(json.Marshal(sp))) || !reflect.DeepEqual(fp, sp) {
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
	// DecodeStoredOwned (Data not copied) answers as DecodeStored
	own, err3 := events.DecodeStoredOwned(slices.Clone(b))
	if (err2 == nil) != (err3 == nil) || (err2 != nil && err2.Error() != err3.Error()) {
		t.Fatalf("DecodeStoredOwned errors differ: %v vs %v", err2, err3)
	}
	if err2 == nil {
		p2, _ := st.Payload()
		p3, _ := own.Payload()
		if !reflect.DeepEqual(st.Event, own.Event) || string(must(json.Marshal(p2))) != string(must(json.Marshal(p3))) {
			t.Fatalf("DecodeStoredOwned differs from DecodeStored on %q", b)
		}
	}
	return true, fp != nil
}

func TestFastDecodeGivesTheStandardEventForEveryGeneratedEvent(t *testing.T) {
	is := is.New(t)
	evs := fixtures.GenerateLog(5, fixtures.Options{Devices: 20, Events: 5000, UnknownKind: true, DriftRate: 0.2, OfflineRate: 0.05})
	fast, payloads, frequent := 0, 0, 0
	for _, e := range evs {
		b, err := events.Encode(e)
		is.NoErr(err)
		f, p := sameAsStandard(t, b)
		if f {
			fast++
		}
		switch e.Type {
		case events.TypeStatusChanged, events.TypeReconcileAttempted, events.TypeDriftDetected, events.TypeManifestApplied:
			frequent++
			if p {
				payloads++
			}
		}
	}
	is.Equal(fast, len(evs))     // what fleet writes takes the fast path
	is.Equal(payloads, frequent) // and the payloads of the frequent types too
	is.True(frequent > len(evs)/2)
}

func TestFastDecodeGivesUpOnWhatItDoesNotKnow(t *testing.T) {
	good := `{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","resource":"r1","generation":1,"at":"2025-01-01T00:00:00.124675475Z","actor":"agent:pi-002","data":{"kind":"file","from":"Pending","to":"Ready","trigger":"reconcile"}}`
	if f, p := sameAsStandard(t, []byte(good)); !f || !p {
		t.Fatal("the plain event should take the fast path")
	}
	health := `{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","resource":"r1","generation":1,"at":"2025-01-01T00:00:00Z","actor":"agent:pi-002","data":{"kind":"container","from":"Ready","to":"Unhealthy","trigger":"probeFailed","reason":"LivenessFailed","error":"HTTP 500","probe":"liveness","failures":3,"restarts":2,"nextRestart":"2025-01-01T00:00:04.5Z"}}`
	if f, p := sameAsStandard(t, []byte(health)); !f || !p {
		t.Fatal("a health status change should take the fast path")
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

// BenchmarkDecode decodes generated events (the mix of a real log, and its
// ManifestApplied events alone) with DecodeStored, beside the standard
// decoder on the same events:
//
//	go test -run '^$' -bench Decode -benchtime 20000x ./events/
func BenchmarkDecode(b *testing.B) {
	evs := fixtures.GenerateLog(31, fixtures.Options{Devices: 200, Resources: 6, Events: 20000, UnknownKind: true})
	var all, manifests [][]byte
	for _, e := range evs {
		x, err := events.Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		all = append(all, x)
		if e.Type == events.TypeManifestApplied {
			manifests = append(manifests, x)
		}
	}
	decoders := []struct {
		name string
		dec  func([]byte) error
	}{
		{"fleet", func(x []byte) error { _, err := events.DecodeStored(x); return err }},
		{"standard", func(x []byte) error { _, _, err := events.DecodeStandard(x); return err }},
	}
	for _, set := range []struct {
		name string
		evs  [][]byte
	}{{"mix", all}, {"manifest", manifests}} {
		for _, d := range decoders {
			b.Run(set.name+"/"+d.name, func(b *testing.B) {
				i := 0
				for b.Loop() {
					if err := d.dec(set.evs[i%len(set.evs)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

func TestFastDecodeManifestsAsResourceUnmarshalJSONDoes(t *testing.T) {
	env := func(data string) []byte {
		return []byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"ManifestApplied","schema":1,"device":"pi-002","generation":3,"at":"2025-01-01T00:00:00Z","actor":"user:ops","data":` + data + `}`)
	}
	fast := []string{
		`{"manifest":{"resources":[]},"digest":"d"}`,
		`{"manifest":{"resources":[{"id":"e","file":{"path":"/a\/b","content":"\"\\\/\b\f\n\r\t\ud83d\ude00\ud83d x\u0000"}}]},"digest":"d"}`,
		`{"manifest":{"resources":[{"id":"motd","file":{"path":"/etc/motd","content":"hello \"you\"\n\u00e9 é","mode":"0644","owner":"root","group":"root"}}]},"digest":"d","signature":"c2ln","keyId":"k1"}`,
		`{"manifest":{"resources":[{"driftPolicy":"report","id":"u","systemdUnit":{"name":"a.service","content":"[Service]\n","enabled":false,"active":true}}]},"digest":"d"}`,
		`{"manifest":{"resources":[{"container":{"name":"w","image":"nginx:1","command":["a","b c"],"env":{"A":"1","B":""},"ports":["80:80"],"volumes":[],"restart":"always"},"id":"w"}]},"digest":"d"}`,
		`{"manifest":{"resources":[{"exec":{"argv":["/bin/true"],"timeout":"1s"},"id":"x"},{"helm":{"chart":"x","values":[1,{"a":null}]},"id":"h"}]},"digest":"d"}`,
		`{"manifest":{"resources":[{"id":"h","helm":null}]},"digest":"d"}`, // unknown kind: its spec is kept as given
		` { "manifest" : { "resources" : [ { "id" : "a" , "file" : { "path" : "/a" , "content" : "" } } ] } , "digest" : "d" } `,
	}
	for _, d := range fast {
		if f, p := sameAsStandard(t, env(d)); !f || !p {
			t.Errorf("fast payload not taken for %s", d)
		}
	}
	slow := []string{
		`{"manifest":{"resources":[{"id":"a"}]},"digest":"d"}`,                                                                 // no kind: a Problem
		`{"manifest":{"resources":[{"id":"a","file":{"path":"/a"},"exec":{"argv":["x"]}}]},"digest":"d"}`,                      // two kinds
		`{"manifest":{"resources":[{"id":"a","file":null}]},"digest":"d"}`,                                                     // null spec
		`{"manifest":{"resources":[{"id":"a","file":{"Path":"/a"}}]},"digest":"d"}`,                                            // case-folded field
		`{"manifest":{"resources":[{"id":"a","file":{"path":"/a","size":3}}]},"digest":"d"}`,                                   // unknown spec field
		`{"manifest":{"resources":[{"id":null,"file":{"path":"/a"}}]},"digest":"d"}`,                                           // null id
		`{"manifest":{"resources":[{"id":"a","container":{"image":"x","env":{"A":"1","A":"2"}}}]},"digest":"d"}`,               // repeated env key
		`{"manifest":{"resources":[{"id":"a","file":{"path":"/a","content":"x"}}]},"digest":"d","extra":true}`,                 // unknown payload field
		`{"manifest":{"resources":null},"digest":"d"}`,                                                                         // null list
		`{"manifest":{"resources":[{"id":"a","systemdUnit":{"name":"a.service","content":"x","enabled":null}}]},"digest":"d"}`, // null bool
	}
	for _, d := range slow {
		if _, p := sameAsStandard(t, env(d)); p {
			t.Errorf("fast payload taken for %s", d)
		}
	}
}

func TestFastDecodeGivesTheSamePayloadWhicheverOfTypeAndDataComesFirst(t *testing.T) {
	is := is.New(t)
	data := `{"kind":"file","from":"Reconciling","to":"Failed","trigger":"failed","reason":"x","error":"boom","attempts":2}`
	typeFirst := []byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"pi-002","resource":"motd","generation":3,"at":"2025-01-01T00:00:00Z","actor":"agent:pi-002","data":` + data + `}`)
	dataFirst := []byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","data":` + data + `,"schema":1,"device":"pi-002","resource":"motd","generation":3,"at":"2025-01-01T00:00:00Z","actor":"agent:pi-002","type":"StatusChanged"}`)
	for _, b := range [][]byte{typeFirst, dataFirst} {
		fast, payload := sameAsStandard(t, b)
		is.True(fast && payload) // decoded on the fast path, payload too
	}
	e1, p1, _ := events.FastDecode(typeFirst)
	e2, p2, _ := events.FastDecode(dataFirst)
	is.Equal(e1, e2)
	is.Equal(p1, p2)
	is.Equal(string(e1.Data), data) // Data is the payload's bytes, as sent
}

func TestFastDecodeSharesRecurringStringsWithoutMixingThemUp(t *testing.T) {
	is := is.New(t)
	// many devices and resources in turn: shared strings must never hand
	// one event another's id, also when slots are replaced
	for i := range 20000 {
		dev, res := fmt.Sprintf("pi-%05d", i%9000), fmt.Sprintf("r%d", i%7)
		b := []byte(`{"id":"01JGFJJZ3WDBK7GFTFQQMHPVNR","type":"StatusChanged","schema":1,"device":"` + dev + `","resource":"` + res + `","generation":3,"at":"2025-01-01T00:00:00Z","actor":"agent:` + dev + `","data":{"kind":"file","from":"Pending","to":"Reconciling","trigger":"reconcile"}}`)
		e, _, ok := events.FastDecode(b)
		is.True(ok)
		is.Equal(e.Device, dev)
		is.Equal(e.Resource, res)
		is.Equal(e.Actor, "agent:"+dev)
	}
}
