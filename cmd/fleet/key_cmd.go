package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/fleet-dev/fleet/events"
)

func init() {
	register("key", "Manage manifest signing keys (ed25519).", "Trust", &KeyCmd{})
}

// KeyCmd is `fleet key`.
type KeyCmd struct {
	New  KeyNewCmd  `cmd:"" help:"Make a new signing key."`
	Show KeyShowCmd `cmd:"" help:"Show the public key and key id of a signing key."`
}

// Help is shown by `fleet key --help`.
func (c *KeyCmd) Help() string {
	return `Manifests applied with 'fleet apply --key FILE' carry an ed25519 signature
and the signer's key id; an agent started with '--trust PUBKEY' applies only
manifests that key signed and records ManifestRejected for any other.

Examples:
  fleet key new --out ops.key
  fleet key show --key ops.key -o json
  fleet apply -f site.yaml --device pi-01 --key ops.key
  fleet agent --device pi-01 --trust ed25519:...`
}

// KeyNewCmd is `fleet key new`.
type KeyNewCmd struct {
	Out   string `default:"fleet-signing.key" placeholder:"FILE" help:"Where to write the private key (PEM, mode 0600)."`
	Force bool   `help:"Overwrite FILE if it exists."`
	Output
}

// Help is shown by `fleet key new --help`.
func (c *KeyNewCmd) Help() string {
	return `Writes a new ed25519 private key (PKCS #8 PEM, mode 0600) and prints its
public key, which you give to agents with --trust, and its key id, which the
log records beside every signature. An existing file is not overwritten
unless --force is given.

Examples:
  fleet key new --out ops.key
  fleet key new --out ops.key -o json`
}

// Run makes and writes the key.
func (c *KeyNewCmd) Run(ctx context.Context, g *Globals) error {
	s, err := events.GenerateSigner()
	if err != nil {
		return err
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if c.Force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(c.Out, flags, 0o600)
	if errors.Is(err, os.ErrExist) {
		return usagef("key file %s exists: not overwriting it (use --force, or another --out)", c.Out)
	}
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if c.Force {
		_ = f.Chmod(0o600)
	}
	if _, err := f.Write(s.MarshalPrivateKey()); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", c.Out, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write key %s: %w", c.Out, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key %s: %w", c.Out, err)
	}
	return printKey(c.Output, c.Out, s)
}

// KeyShowCmd is `fleet key show`.
type KeyShowCmd struct {
	Key string `required:"" env:"FLEET_KEY" placeholder:"FILE" help:"Private key file."`
	Output
}

// Help is shown by `fleet key show --help`.
func (c *KeyShowCmd) Help() string {
	return `Prints the public key (for agents' --trust) and key id of a private key file.

Examples:
  fleet key show --key ops.key
  FLEET_KEY=ops.key fleet key show -o json`
}

// Run loads and prints the key.
func (c *KeyShowCmd) Run(ctx context.Context, g *Globals) error {
	s, err := events.LoadSigner(c.Key)
	if err != nil {
		return err
	}
	return printKey(c.Output, c.Key, s)
}

func printKey(o Output, file string, s *events.Ed25519Signer) error {
	if o.JSON() {
		return printJSON(map[string]string{"file": file, "publicKey": s.Public().String(), "keyId": s.KeyID()})
	}
	fmt.Printf("private key: %s (keep it secret)\n", file)
	fmt.Printf("key id:      %s\n", s.KeyID())
	fmt.Printf("public key:  %s\n", s.Public())
	fmt.Printf("  agents:    fleet agent --device ID --trust %s\n", s.Public())
	fmt.Printf("  apply:     fleet apply -f FILE --device ID --key %s\n", file)
	return nil
}
