package events

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// ErrSignature is wrapped by every error that refuses a manifest's signature:
// unsigned, signed by a key that is not trusted, or not matching the manifest.
var ErrSignature = errors.New("manifest signature refused")

// PublicKeyPrefix starts the printable form of a manifest signing public key.
const PublicKeyPrefix = "ed25519:"

// MaxKeyFileBytes bounds a key file; a real one is about 120 bytes.
const MaxKeyFileBytes = 16 << 10

// PublicKey is an ed25519 key that verifies manifest signatures.
type PublicKey ed25519.PublicKey

// String is the printable form, "ed25519:" and the standard base64 of the 32
// key bytes; ParsePublicKey reads it back.
func (k PublicKey) String() string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(k)
}

// KeyID is the key's short id: the first 16 hex digits of the sha256 of the
// key bytes. It is recorded beside every signature (ManifestApplied.KeyID).
func (k PublicKey) KeyID() string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:8])
}

// ParsePublicKey reads a public key in its printable form ("ed25519:BASE64")
// or as a PEM "PUBLIC KEY" block (as openssl writes it). The error names
// what is wrong and wraps ErrInvalid.
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		blk, _ := pem.Decode([]byte(s))
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%w: public key: PEM must hold one PUBLIC KEY block", ErrInvalid)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: public key: %v", ErrInvalid, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: public key: must be ed25519, is %T", ErrInvalid, k)
		}
		return PublicKey(pub), nil
	}
	rest, ok := strings.CutPrefix(s, PublicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: public key %q: must start with %q (see 'fleet key new')", ErrInvalid, abbrev(s), PublicKeyPrefix)
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: public key %q: not base64: %v", ErrInvalid, abbrev(s), err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key %q: must be %d bytes, is %d", ErrInvalid, abbrev(s), ed25519.PublicKeySize, len(b))
	}
	return PublicKey(b), nil
}

// LoadPublicKey reads a public key given inline ("ed25519:...") or as the path
// of a file holding one (printable form or PEM).
func LoadPublicKey(s string) (PublicKey, error) {
	if strings.HasPrefix(strings.TrimSpace(s), PublicKeyPrefix) {
		return ParsePublicKey(s)
	}
	b, err := readSmall(s)
	if err != nil {
		return nil, fmt.Errorf("%w: public key %q: neither %q... nor a readable file: %v", ErrInvalid, abbrev(s), PublicKeyPrefix, err)
	}
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", s, err)
	}
	return k, nil
}

// Ed25519Signer signs manifest digests with an ed25519 private key; it is the
// events.Signer that `fleet apply --key` uses. Safe for concurrent use.
type Ed25519Signer struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// GenerateSigner makes a new random signing key.
func GenerateSigner() (*Ed25519Signer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return &Ed25519Signer{priv: priv, pub: PublicKey(pub)}, nil
}

// NewSigner wraps an ed25519 private key.
func NewSigner(priv ed25519.PrivateKey) (*Ed25519Signer, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: signing key: must be %d bytes, is %d", ErrInvalid, ed25519.PrivateKeySize, len(priv))
	}
	return &Ed25519Signer{priv: priv, pub: PublicKey(priv.Public().(ed25519.PublicKey))}, nil
}

// Public returns the key that verifies this signer's signatures.
func (s *Ed25519Signer) Public() PublicKey { return s.pub }

// KeyID is the id of the signer's public key.
func (s *Ed25519Signer) KeyID() string { return s.pub.KeyID() }

// Sign implements Signer: the signature is the standard base64 of the ed25519
// signature of statement (see SignedStatement). It never fails for a valid key.
func (s *Ed25519Signer) Sign(statement []byte) (string, string, error) {
	sig := ed25519.Sign(s.priv, statement)
	return base64.StdEncoding.EncodeToString(sig), s.KeyID(), nil
}

// MarshalPrivateKey returns the signer's key as a PEM "PRIVATE KEY" block
// (PKCS #8, the form `openssl genpkey -algorithm ed25519` writes).
func (s *Ed25519Signer) MarshalPrivateKey() []byte {
	der, err := x509.MarshalPKCS8PrivateKey(s.priv)
	if err != nil { // only for key types x509 does not know; ed25519 it knows
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// ParsePrivateKey reads a PEM "PRIVATE KEY" block holding an ed25519 key. The
// error names what is wrong and wraps ErrInvalid; it never quotes key bytes.
func ParsePrivateKey(b []byte) (*Ed25519Signer, error) {
	if len(b) > MaxKeyFileBytes {
		return nil, fmt.Errorf("%w: signing key: %d bytes: must be at most %d", ErrInvalid, len(b), MaxKeyFileBytes)
	}
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: signing key: not PEM (expected a PRIVATE KEY block from 'fleet key new')", ErrInvalid)
	}
	if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%w: signing key: PEM block is %q: must be \"PRIVATE KEY\" (PKCS #8 ed25519)", ErrInvalid, blk.Type)
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("%w: signing key: trailing data after the PRIVATE KEY block", ErrInvalid)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: not PKCS #8: %v", ErrInvalid, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: signing key: must be ed25519, is %T", ErrInvalid, k)
	}
	return NewSigner(priv)
}

// LoadSigner reads a private key file. On Unix it refuses a file that group
// or others may read or write, as ssh does, since whoever reads it can sign
// manifests that trusting agents apply.
func LoadSigner(path string) (*Ed25519Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: signing key %s: must be a regular file", ErrInvalid, path)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: signing key %s: mode %04o lets others read it: must be 0600 or stricter (chmod 600 %s)", ErrInvalid, path, fi.Mode().Perm(), path)
	}
	b, err := readSmall(path)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	s, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// VerifyManifest checks that p carries a valid signature by pub over its
// manifest. The digest is recomputed from p.Manifest, never taken from
// p.Digest; a Digest field that disagrees is refused too. The error says
// why (unsigned, another key, digest mismatch, bad signature) and wraps
// ErrSignature.
// The signature covers the device and the generation too (SignedStatement), so
// a signed manifest cannot be replayed to another device or as another
// generation by someone who can append but does not hold the key.
func VerifyManifest(pub PublicKey, device string, generation int64, p *ManifestApplied) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: trusted key: must be %d bytes, is %d", ErrSignature, ed25519.PublicKeySize, len(pub))
	}
	if p == nil {
		return fmt.Errorf("%w: no manifest", ErrSignature)
	}
	if p.Signature == "" {
		return fmt.Errorf("%w: manifest is unsigned: this agent applies only manifests signed by key %s", ErrSignature, pub.KeyID())
	}
	if p.KeyID != "" && p.KeyID != pub.KeyID() {
		return fmt.Errorf("%w: manifest is signed by key %s: this agent trusts key %s", ErrSignature, abbrev(p.KeyID), pub.KeyID())
	}
	digest := p.Manifest.Digest()
	if p.Digest != digest {
		return fmt.Errorf("%w: digest field %s does not match the manifest's digest %s", ErrSignature, abbrev(p.Digest), digest[:16])
	}
	sig, err := base64.StdEncoding.DecodeString(p.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature: must be the base64 of a %d-byte ed25519 signature", ErrSignature, ed25519.SignatureSize)
	}
	if !ed25519.Verify(ed25519.PublicKey(pub), SignedStatement(device, generation, digest), sig) {
		return fmt.Errorf("%w: signature does not verify with key %s for device %s generation %d", ErrSignature, pub.KeyID(), device, generation)
	}
	return nil
}

// VerifyManifestAny accepts p if any of keys verifies it (key rotation: trust
// the old and the new key for a while). With no keys it refuses everything.
func VerifyManifestAny(keys []PublicKey, device string, generation int64, p *ManifestApplied) error {
	if len(keys) == 0 {
		return fmt.Errorf("%w: no trusted keys", ErrSignature)
	}
	if p != nil && p.KeyID != "" {
		for _, k := range keys {
			if k.KeyID() == p.KeyID {
				return VerifyManifest(k, device, generation, p)
			}
		}
	}
	var first error
	for _, k := range keys {
		err := VerifyManifest(k, device, generation, p)
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	if len(keys) > 1 && p != nil && p.Signature != "" {
		ids := make([]string, len(keys))
		for i, k := range keys {
			ids[i] = k.KeyID()
		}
		return fmt.Errorf("%w: manifest is signed by key %s: this agent trusts keys %s", ErrSignature, abbrev(p.KeyID), strings.Join(ids, ", "))
	}
	return first
}

// SignedStatement is what a manifest signature signs: the manifest's digest
// bound to the device and generation it was applied as.
func SignedStatement(device string, generation int64, digest string) []byte {
	return fmt.Appendf(nil, "fleet-manifest-v1\ndevice %s\ngeneration %d\ndigest %s\n", device, generation, digest)
}

// readSmall reads a file of at most MaxKeyFileBytes.
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxKeyFileBytes {
		return nil, fmt.Errorf("%w: file is larger than %d bytes", ErrInvalid, MaxKeyFileBytes)
	}
	return b, nil
}

// abbrev shortens untrusted text quoted in an error.
func abbrev(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// LoadTrust reads the keys an agent trusts, each given inline
// ("ed25519:...") or as a key file.
func LoadTrust(specs []string) ([]PublicKey, error) {
	keys := make([]PublicKey, 0, len(specs))
	for _, s := range specs {
		k, err := LoadPublicKey(s)
		if err != nil {
			return nil, fmt.Errorf("--trust: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// TrustCheck is the manifest check of an agent that trusts keys (for
// agent.WithManifestCheck): a manifest not validly signed by one of them is
// refused with the reason, which the agent records in ManifestRejected.
func TrustCheck(keys []PublicKey) func(Stored, *ManifestApplied) error {
	keys = append([]PublicKey(nil), keys...)
	return func(s Stored, p *ManifestApplied) error {
		if err := VerifyManifestAny(keys, s.Device, s.Generation, p); err != nil {
			return fmt.Errorf("generation %d (sequence %d): %w", s.Generation, s.Seq, err)
		}
		return nil
	}
}
