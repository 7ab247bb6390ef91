package events_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

func signedManifest(t *testing.T, s events.Signer) *events.ManifestApplied {
	t.Helper()
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := &events.ManifestApplied{Manifest: m, Digest: m.Digest()}
	if s != nil {
		p.Signature, p.KeyID, err = s.Sign(events.SignedStatement("pi-01", 1, p.Digest))
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestSignedManifestIsOnTheLogAndVerifies(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	signer, err := events.GenerateSigner()
	is.NoErr(err)
	m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
	is.NoErr(err)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	_, err = events.Apply(context.Background(), env.Store, clock, "pi-01", m, "user:ops", signer)
	is.NoErr(err)

	last, err := env.Store.LastManifest(context.Background(), "pi-01")
	is.NoErr(err)
	p, err := last.Payload()
	is.NoErr(err)
	ma := p.(*events.ManifestApplied)
	is.Equal(ma.KeyID, signer.KeyID()) // the key id is in the audit trail
	is.True(ma.Signature != "")        // and so is the signature
	is.NoErr(events.VerifyManifest(signer.Public(), "pi-01", 1, ma))
	is.NoErr(events.VerifyManifestAny([]events.PublicKey{mustKey(t).Public(), signer.Public()}, "pi-01", 1, ma))
}

func mustKey(t *testing.T) *events.Ed25519Signer {
	t.Helper()
	s, err := events.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyManifestRefuses(t *testing.T) {
	trusted, other := mustKey(t), mustKey(t)
	cases := []struct {
		name   string
		p      func() *events.ManifestApplied
		want   string
		device string // default pi-01 at generation 1, what signedManifest signs
		gen    int64
	}{
		{"replayed to another device", func() *events.ManifestApplied { return signedManifest(t, trusted) }, "device pi-02", "pi-02", 1},
		{"replayed as another generation", func() *events.ManifestApplied { return signedManifest(t, trusted) }, "generation 7", "pi-01", 7},
		{"unsigned", func() *events.ManifestApplied { return signedManifest(t, nil) }, "unsigned", "", 0},
		{"signed by another key", func() *events.ManifestApplied { return signedManifest(t, other) }, "signed by key " + other.KeyID(), "", 0},
		{"another key claiming the trusted key id", func() *events.ManifestApplied {
			p := signedManifest(t, other)
			p.KeyID = trusted.KeyID()
			return p
		}, "does not verify", "", 0},
		{"manifest changed after signing, digest recomputed", func() *events.ManifestApplied {
			p := signedManifest(t, trusted)
			p.Manifest.Resources[0].File.Content = "evil\n"
			p.Digest = p.Manifest.Digest()
			return p
		}, "does not verify", "", 0},
		{"manifest changed after signing, digest kept", func() *events.ManifestApplied {
			p := signedManifest(t, trusted)
			p.Manifest.Resources[0].File.Mode = "4777"
			return p
		}, "does not match", "", 0},
		{"signature not base64", func() *events.ManifestApplied {
			p := signedManifest(t, trusted)
			p.Signature = "!!!"
			return p
		}, "base64", "", 0},
		{"signature truncated", func() *events.ManifestApplied {
			p := signedManifest(t, trusted)
			p.Signature = p.Signature[:20]
			return p
		}, "64-byte", "", 0},
		{"nil", func() *events.ManifestApplied { return nil }, "no manifest", "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			device, gen := c.device, c.gen
			if device == "" {
				device, gen = "pi-01", 1
			}
			err := events.VerifyManifest(trusted.Public(), device, gen, c.p())
			is.True(err != nil)
			is.True(errors.Is(err, events.ErrSignature))
			is.True(strings.Contains(err.Error(), c.want)) // error names the problem
		})
	}
	t.Run("no trusted keys", func(t *testing.T) {
		is := is.New(t)
		err := events.VerifyManifestAny(nil, "pi-01", 1, signedManifest(t, trusted))
		is.True(errors.Is(err, events.ErrSignature))
	})
	t.Run("several trusted keys, none matches", func(t *testing.T) {
		is := is.New(t)
		err := events.VerifyManifestAny([]events.PublicKey{trusted.Public(), mustKey(t).Public()}, "pi-01", 1, signedManifest(t, other))
		is.True(errors.Is(err, events.ErrSignature))
		is.True(strings.Contains(err.Error(), other.KeyID()))
	})
}

func TestKeyFilesRoundTrip(t *testing.T) {
	is := is.New(t)
	dir := t.TempDir()
	s := mustKey(t)
	path := filepath.Join(dir, "fleet.key")
	is.NoErr(os.WriteFile(path, s.MarshalPrivateKey(), 0o600))
	back, err := events.LoadSigner(path)
	is.NoErr(err)
	is.Equal(back.KeyID(), s.KeyID())
	is.Equal(len(s.KeyID()), 16)

	pub, err := events.ParsePublicKey(s.Public().String())
	is.NoErr(err)
	is.Equal(pub.KeyID(), s.KeyID())
	is.True(strings.HasPrefix(s.Public().String(), "ed25519:"))

	// a public key file, printable or PEM (as openssl writes it)
	pf := filepath.Join(dir, "fleet.pub")
	is.NoErr(os.WriteFile(pf, []byte(s.Public().String()+"\n"), 0o644))
	pub, err = events.LoadPublicKey(pf)
	is.NoErr(err)
	is.Equal(pub.KeyID(), s.KeyID())
	der, err := x509.MarshalPKIXPublicKey(ed25519.PublicKey(s.Public()))
	is.NoErr(err)
	pemPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pub, err = events.ParsePublicKey(string(pemPub))
	is.NoErr(err)
	is.Equal(pub.KeyID(), s.KeyID())
}

func TestKeyFilesRefused(t *testing.T) {
	dir := t.TempDir()
	s := mustKey(t)
	loose := filepath.Join(dir, "loose.key")
	if err := os.WriteFile(loose, s.MarshalPrivateKey(), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		load func() error
		want string
	}{
		{"private key readable by others", func() error { _, err := events.LoadSigner(loose); return err }, "chmod 600"},
		{"private key missing", func() error { _, err := events.LoadSigner(filepath.Join(dir, "nope")); return err }, "no such file"},
		{"private key not PEM", func() error { _, err := events.ParsePrivateKey([]byte("hello")); return err }, "not PEM"},
		{"private key wrong block", func() error {
			_, err := events.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1}}))
			return err
		}, `must be "PRIVATE KEY"`},
		{"private key garbage DER", func() error {
			_, err := events.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
			return err
		}, "not PKCS #8"},
		{"private key trailing data", func() error {
			_, err := events.ParsePrivateKey(append(s.MarshalPrivateKey(), "junk"...))
			return err
		}, "trailing data"},
		{"private key huge", func() error {
			_, err := events.ParsePrivateKey(make([]byte, events.MaxKeyFileBytes+1))
			return err
		}, "at most"},
		{"public key without prefix", func() error { _, err := events.ParsePublicKey("AAAA"); return err }, `must start with "ed25519:"`},
		{"public key not base64", func() error { _, err := events.ParsePublicKey("ed25519:%%%"); return err }, "not base64"},
		{"public key short", func() error {
			_, err := events.ParsePublicKey("ed25519:" + base64.StdEncoding.EncodeToString([]byte("short")))
			return err
		}, "must be 32 bytes"},
		{"public key PEM of a private key", func() error { _, err := events.ParsePublicKey(string(s.MarshalPrivateKey())); return err }, "PUBLIC KEY block"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			is := is.New(t)
			err := c.load()
			is.True(err != nil)
			is.True(strings.Contains(err.Error(), c.want)) // error names the problem
		})
	}
}
