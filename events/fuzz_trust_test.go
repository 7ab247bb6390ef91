package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// Fuzz targets for the decoders that FuzzDecode and FuzzParseManifest (in
// fuzz_test.go) do not cover. Their corpora are in testdata/fuzz; CI runs
// them as plain tests over the corpus, `go test -fuzz` explores further:
//   go test -run '^$' -fuzz FuzzLenientManifest -fuzztime 30s ./events/

// FuzzLenientManifest: the agent's lenient decoding of a manifest never
// panics; what it accepts and Validate passes is a manifest the strict
// parser accepts too, with the same digest (so a signature made by the
// control plane verifies on the agent).
func FuzzLenientManifest(f *testing.F) {
	for _, c := range hostileManifests {
		if len(c.doc) < 4096 {
			f.Add([]byte(c.doc))
		}
	}
	f.Add([]byte(`{"resources":[{"id":"a","helm":{"chart":"x"}},{"id":"b","file":{"path":"/b","content":"x"}}]}`))
	f.Add([]byte(`{"resources":[{"id":"a","file":{"path":"/a","extra":1}}]}`))
	f.Add([]byte(`{"resources":[{"id":"a","exec":null}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m events.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return
		}
		d := m.Digest()
		if m.Validate() != nil {
			return
		}
		js, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("valid manifest does not marshal: %v", err)
		}
		if len(js) > events.MaxManifestBytes {
			return
		}
		strict, err := events.ParseManifest(js)
		if err != nil {
			t.Fatalf("lenient manifest passes Validate but its canonical form %s is refused: %v", js, err)
		}
		if strict.Digest() != d {
			t.Fatalf("digest differs between lenient and strict decoding of %s", js)
		}
	})
}

// FuzzPayload: any data under any known event type decodes to its payload
// or is refused with ErrInvalid; never a panic.
func FuzzPayload(f *testing.F) {
	for _, typ := range events.Types() {
		f.Add(typ, []byte(`{}`))
	}
	f.Add(events.TypeStatusChanged, []byte(`{"kind":"file","from":"Pending","to":"Ready","trigger":"x","retryAfter":"2026-01-01T00:00:00Z"}`))
	f.Add(events.TypeReconcileAttempted, []byte(`{"kind":"file","attempt":1,"durationNs":-1,"outcome":"failed","exitCode":-1}`))
	f.Add(events.TypeDriftDetected, []byte(`{"kind":"file","differences":[{"field":"mode","expected":"0644","observed":"0777"}],"policy":"correct"}`))
	f.Add(events.TypeManifestApplied, []byte(`{"manifest":{"resources":[{"id":"a","unknownKind":{}}]},"digest":"x","signature":"AAAA","keyId":"k"}`))
	f.Add(events.TypeManifestRejected, []byte(`{"reason":"x","rejectedGeneration":-1,"keptGeneration":1}`))
	f.Add("NoSuchType", []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, data []byte) {
		e := events.Event{ID: "01J00000000000000000000000", Type: typ, Schema: 1, Device: "d", Data: data}
		p, err := e.Payload()
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if p.EventType() != typ {
			t.Fatalf("payload of type %s decoded as %s", typ, p.EventType())
		}
		if _, err := json.Marshal(p); err != nil {
			t.Fatalf("decoded payload does not encode: %v", err)
		}
	})
}

// FuzzFromRaw: any message on any subject of the log decodes to an event
// that belongs on that subject, or to a *BadMessage carrying its sequence
// (what replay and projections report and skip); never a panic.
func FuzzFromRaw(f *testing.F) {
	e, _ := events.New("pi-01", "motd", 1, "agent:pi-01", &events.StatusChanged{Kind: "file", To: "Pending", Trigger: "specChanged"})
	c, _ := events.NewClock(events.ClockState{}, nil)
	c.Stamp(&e)
	good, _ := events.Encode(e)
	f.Add("fleet.pi-01.status.motd", good)
	f.Add("fleet.pi-02.status.motd", good)               // another device's subject
	f.Add("fleet.pi-01.manifest", good)                  // wrong kind of subject
	f.Add("fleet.pi-01.status.motd", good[:len(good)/2]) // truncated
	f.Add("fleet.pi-01.status.motd", bytes.Replace(good, []byte(`"schema":1`), []byte(`"schema":99`), 1))
	f.Add("fleet.pi-01.status.motd", bytes.Replace(good, []byte(`"StatusChanged"`), []byte(`"Teleported"`), 1))
	f.Add("fleet.x", []byte("\x00\xff"))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		st, err := jsstore.FromRaw(subject, 42, time.Unix(0, 0), data)
		if err != nil {
			var bad *events.BadMessage
			if !errors.As(err, &bad) || bad.Seq != 42 || !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("refusal is not a BadMessage with its sequence wrapping ErrInvalid: %v", err)
			}
			return
		}
		if want, _ := events.SubjectFor(st.Event); want != subject || st.Seq != 42 {
			t.Fatalf("event for %s accepted on %s", want, subject)
		}
	})
}

// FuzzKeyFiles: private and public key files either parse to a usable key
// or are refused with ErrInvalid; never a panic. A parsed private key signs
// what its public key verifies.
func FuzzKeyFiles(f *testing.F) {
	s, _ := events.GenerateSigner()
	f.Add(s.MarshalPrivateKey())
	f.Add([]byte(s.Public().String()))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("ed25519:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if signer, err := events.ParsePrivateKey(b); err == nil {
			p := signedManifest(t, signer)
			if err := events.VerifyManifest(signer.Public(), "pi-01", 1, p); err != nil {
				t.Fatalf("parsed key's signature does not verify: %v", err)
			}
		} else if !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("private key refusal does not wrap ErrInvalid: %v", err)
		}
		if pub, err := events.ParsePublicKey(string(b)); err == nil {
			if len(pub) != 32 {
				t.Fatalf("public key of %d bytes accepted", len(pub))
			}
		} else if !errors.Is(err, events.ErrInvalid) {
			t.Fatalf("public key refusal does not wrap ErrInvalid: %v", err)
		}
	})
}

// FuzzVerifyManifest: whatever an attacker puts in a ManifestApplied's
// signature, key id and digest fields, it is refused unless the trusted key
// really signed that manifest.
func FuzzVerifyManifest(f *testing.F) {
	f.Add("", "", "", "x")
	f.Add("AAAA", "0000000000000000", "deadbeef", "y")
	f.Add("ZmFrZQ==", "", "", "")
	signer, _ := events.GenerateSigner()
	f.Fuzz(func(t *testing.T, sig, kid, digest, content string) {
		m, _ := events.ParseManifest([]byte("resources: [{id: a, file: {path: /a}}]"))
		m.Resources[0].File.Content = content
		p := &events.ManifestApplied{Manifest: m, Digest: digest, Signature: sig, KeyID: kid}
		if err := events.VerifyManifest(signer.Public(), "pi-01", 1, p); err == nil {
			t.Fatalf("forged signature %q accepted", sig)
		} else if !errors.Is(err, events.ErrSignature) {
			t.Fatalf("refusal does not wrap ErrSignature: %v", err)
		}
	})
}
