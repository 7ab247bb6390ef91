package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
)

func init() {
	register("device", "Issue, list and revoke device credentials (with 'fleet server --auth').", "Trust", &DeviceCmd{})
}

// serverAuth opens (the first time: creates) DATA/auth and turns
// authentication on in eo. It returns the auth directory.
func serverAuth(data string, eo *embedded.Options) (string, error) {
	dir := filepath.Join(data, "auth")
	a, err := auth.Open(dir)
	if err != nil {
		return "", err
	}
	cfg, err := embedded.WithAuth(a)
	if err != nil {
		return "", err
	}
	eo.Configure = cfg
	return dir, nil
}

// DeviceCmd is `fleet device`.
type DeviceCmd struct {
	Add       DeviceAddCmd       `cmd:"" help:"Issue credentials for a device."`
	Revoke    DeviceRevokeCmd    `cmd:"" help:"Revoke a device's credentials and cut its connections."`
	List      DeviceListCmd      `cmd:"" help:"List devices that were issued credentials, with any suspension and until when."`
	Reinstate DeviceReinstateCmd `cmd:"" help:"Lift a device's suspension (by the server's rate guard) now."`
}

// Help is shown by `fleet device --help`.
func (c *DeviceCmd) Help() string {
	return `With 'fleet server --auth', every client needs NATS credentials (JWTs, the
NATS ecosystem's own decentralized auth). The operator's credentials (printed
by the server, DATA/auth/operator.creds) may do everything. A device's may
only publish its own lifecycle, attempt, status and drift events and its
heartbeat, and read its own manifest: it cannot write as another device,
read another device's manifest, or apply manifests.

These commands work on the server's data directory (--data, as given to
'fleet server'); revoke also tells the running server, which closes the
device's connections at once.

Examples:
  fleet device add pi-01 --data /var/lib/fleet --out pi-01.creds
  fleet agent --device pi-01 --creds pi-01.creds --nats nats://ctl:4222
  fleet device list --data /var/lib/fleet -o json
  fleet device revoke pi-01 --data /var/lib/fleet
  fleet device reinstate pi-01 --data /var/lib/fleet   # lift a rate-limit suspension

A device storing events faster than 'fleet server --device-rate/--device-burst'
allow is suspended for a while (its credentials revoked until then, then let
in again); 'fleet device list' shows until when.`
}

// authData is the --data flag of the device commands.
type authData struct {
	Data string `default:"./fleet-data" env:"FLEET_DATA" placeholder:"DIR" help:"The server's data directory (its auth keys are in DIR/auth)."`
}

func (d authData) open() (*auth.Authority, error) {
	dir := filepath.Join(d.Data, "auth")
	if _, err := os.Stat(filepath.Join(dir, "operator.jwt")); err != nil {
		return nil, usagef("no auth keys in %s: run 'fleet server --auth --data %s' once first, or point --data at the server's data directory", dir, d.Data)
	}
	return auth.Open(dir)
}

// DeviceAddCmd is `fleet device add`.
type DeviceAddCmd struct {
	ID    string `arg:"" placeholder:"ID" help:"Device id."`
	Out   string `placeholder:"FILE" help:"Where to write the credentials (default ID.creds; '-' for standard output)."`
	Force bool   `help:"Overwrite FILE if it exists."`
	authData
	Output
}

// Help is shown by `fleet device add --help`.
func (c *DeviceAddCmd) Help() string {
	return `Issues a credentials file for the device: a user JWT signed by the FLEET
account key, allowed only the device's own subjects. Give the file to the
device's agent with --creds (or FLEET_CREDS). A device that already has valid
credentials is refused: revoke them first. No server round trip is needed.

Examples:
  fleet device add pi-01
  fleet device add pi-01 --data /var/lib/fleet --out /tmp/pi-01.creds -o json`
}

// Run issues and writes the credentials.
func (c *DeviceAddCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.ID); err != nil {
		return err
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	out := c.Out
	if out == "" {
		out = c.ID + ".creds"
	}
	if out != "-" && !c.Force {
		if _, err := os.Stat(out); err == nil {
			return usagef("credentials file %s exists: not overwriting it (use --force, or another --out)", out)
		}
	}
	creds, d, err := a.AddDevice(c.ID)
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.Write(creds)
		return err
	}
	if err := os.WriteFile(out, creds, 0o600); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	if c.JSON() {
		return printJSON(map[string]any{"device": d.ID, "creds": out, "userKey": d.UserKey, "issuedAt": d.IssuedAt})
	}
	fmt.Printf("device %s: credentials written to %s (keep them secret; user key %s)\n", d.ID, out, d.UserKey)
	fmt.Printf("  agent: fleet agent --device %s --creds %s --nats %s\n", d.ID, out, g.URL())
	return nil
}

// DeviceRevokeCmd is `fleet device revoke`.
type DeviceRevokeCmd struct {
	ID string `arg:"" placeholder:"ID" help:"Device id."`
	authData
	Output
}

// Help is shown by `fleet device revoke --help`.
func (c *DeviceRevokeCmd) Help() string {
	return `Revokes every credential ever issued to the device: the FLEET account JWT
gets their keys on its revocation list, is saved under DATA/auth (so a
restarted server keeps refusing them) and is pushed to the running server at
--nats over the system account, which closes the device's connections. If
the server cannot be told, the command says so and exits 1; run it again to
retry (revoking twice is harmless).

Examples:
  fleet device revoke pi-01
  fleet device revoke pi-01 --data /var/lib/fleet --nats nats://ctl:4222 -o json`
}

// Run revokes and pushes.
func (c *DeviceRevokeCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.ID); err != nil {
		return err
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	tok, d, err := a.RevokeDevice(c.ID)
	if errors.Is(err, events.ErrNotFound) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	pushErr := pushAccount(ctx, g, a, tok, "fleet-device-revoke")
	return reportPush(c.JSON(), map[string]any{"device": d.ID, "revokedAt": d.RevokedAt}, pushErr,
		fmt.Sprintf("device %s: credentials revoked; the server at %s closed its connections", d.ID, g.URL()),
		fmt.Sprintf("device %s: revocation saved in %s, but the server at %s was not told", d.ID, a.Dir(), g.URL()),
		"a server started later refuses it; run this again to retry")
}

// DeviceListCmd is `fleet device list`.
type DeviceListCmd struct {
	authData
	Output
}

// Help is shown by `fleet device list --help`.
func (c *DeviceListCmd) Help() string {
	return `Lists the devices that were issued credentials, with their user key and
whether they are revoked, or suspended by the server's rate guard and until
when (lifted then by the server, or now with 'fleet device reinstate ID').

Examples:
  fleet device list
  fleet device list --data /var/lib/fleet -o json`
}

// Run lists the device records.
func (c *DeviceListCmd) Run(ctx context.Context, g *Globals) error {
	a, err := c.open()
	if err != nil {
		return err
	}
	devs, err := a.Devices()
	if err != nil {
		return err
	}
	if c.JSON() {
		if devs == nil {
			devs = []auth.Device{}
		}
		return printJSON(devs)
	}
	rows := make([][]string, 0, len(devs))
	for _, d := range devs {
		state, when := "active", d.IssuedAt.Format(time.RFC3339)
		switch {
		case d.Revoked():
			state, when = "revoked", d.RevokedAt.Format(time.RFC3339)
		case d.SuspendedUntil != nil:
			state, when = "suspended until", d.SuspendedUntil.Format(time.RFC3339)
		}
		rows = append(rows, []string{d.ID, state, when, d.UserKey})
	}
	return table(os.Stdout, []string{"DEVICE", "STATE", "SINCE", "USER KEY"}, rows)
}

// DeviceReinstateCmd is `fleet device reinstate`.
type DeviceReinstateCmd struct {
	ID string `arg:"" placeholder:"ID" help:"Device id."`
	authData
	Output
}

// Help is shown by `fleet device reinstate --help`.
func (c *DeviceReinstateCmd) Help() string {
	return `Lifts a suspension now: the server's rate guard suspends a device that stores
events faster than --device-rate/--device-burst allow, by revoking its
credentials until the suspension ends. Reinstating removes that revocation
from the FLEET account JWT and pushes it to the server at --nats: the same
credentials work again and the device's agent sends what it kept. A device
that is not suspended is left as it is; a revoked device stays revoked.

Examples:
  fleet device reinstate pi-01
  fleet device reinstate pi-01 --data /var/lib/fleet --nats nats://ctl:4222 -o json`
}

// Run lifts the suspension and pushes.
func (c *DeviceReinstateCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.ID); err != nil {
		return err
	}
	a, err := c.open()
	if err != nil {
		return err
	}
	tok, d, err := a.ReinstateDevice(c.ID)
	if errors.Is(err, events.ErrNotFound) || errors.Is(err, events.ErrInvalid) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	pushErr := pushAccount(ctx, g, a, tok, "fleet-device-reinstate")
	return reportPush(c.JSON(), map[string]any{"device": d.ID, "reinstated": true}, pushErr,
		fmt.Sprintf("device %s: reinstated; the server at %s lets its credentials in again", d.ID, g.URL()),
		fmt.Sprintf("device %s: reinstatement saved in %s, but the server at %s was not told", d.ID, a.Dir(), g.URL()),
		"run this again to retry")
}

// reportPush reports a change of the account JWT saved on disk and pushed
// (or not) to the server: out gains serverTold (and the error) for -o json;
// the text is told, or the error is notTold with the push's error and what
// to do.
func reportPush(jsonOut bool, out map[string]any, pushErr error, told, notTold, todo string) error {
	if jsonOut {
		out["serverTold"] = pushErr == nil
		if pushErr != nil {
			out["error"] = pushErr.Error()
		}
		if err := printJSON(out); err != nil {
			return err
		}
	} else if pushErr == nil {
		fmt.Println(told)
	}
	if pushErr != nil {
		return fmt.Errorf("%s: %w (%s)", notTold, pushErr, todo)
	}
	return nil
}

// pushAccount pushes the account JWT tok to the server at --nats over the
// system account.
func pushAccount(ctx context.Context, g *Globals, a *auth.Authority, tok, name string) error {
	topts, err := auth.TLSOptions(g.TLSCA)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(g.URL(), append(topts, nats.UserCredentials(a.SystemCredsPath()), nats.Name(name), nats.Timeout(5*time.Second))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return auth.Push(pctx, nc, tok)
}

// externalAuth is --auth with --nats: the servers are the operator's own
// (a cluster, a hub), so fleet cannot configure them; it opens (the first
// time: creates) DATA/auth, writes the block every node's config must
// include (auth.NATSConfigFile) and connects as the operator unless
// --creds names other credentials.
func externalAuth(data string, g *Globals) (string, []nats.Option, error) {
	dir := filepath.Join(data, "auth")
	a, err := auth.Open(dir)
	if err != nil {
		return "", nil, err
	}
	if _, err := a.WriteNATSConfig(); err != nil {
		return "", nil, err
	}
	if g.Creds != "" {
		return dir, nil, nil
	}
	return dir, []nats.Option{nats.UserCredentials(a.OperatorCredsPath())}, nil
}
