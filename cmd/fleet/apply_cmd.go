package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kong"

	"github.com/fleet-dev/fleet/events"
)

func init() {
	register("apply", "Set a device's desired state from a manifest file (YAML or JSON).", "Control plane", &ApplyCmd{})
}

// ApplyCmd is `fleet apply`.
type ApplyCmd struct {
	File       string `short:"f" required:"" placeholder:"FILE" help:"Manifest file, YAML or JSON ('-' for standard input)."`
	Device     string `xor:"target" required:"" placeholder:"ID" help:"Device to apply it to."`
	Selector   string `xor:"target" required:"" short:"l" placeholder:"SELECTOR" help:"Apply to every device whose labels match this selector (Kubernetes syntax), each with its own generation; see 'fleet get devices --selector'."`
	DryRun     bool   `help:"Validate the manifest and print the plan against the device's current generation (each resource added, changed or removed), without writing."`
	AllowEmpty bool   `help:"Allow a manifest that removes every resource the device has (its files, units and containers are then removed on the device)."`
	Key        string `env:"FLEET_KEY" placeholder:"FILE" help:"Sign the manifest with this ed25519 key (from 'fleet key new'); agents started with --trust apply only signed manifests."`
	Output
}

// AfterApply refuses a second -f: only one manifest is applied, and kong
// would keep the last silently.
func (c *ApplyCmd) AfterApply(kctx *kong.Context) error {
	files := 0
	for _, p := range kctx.Path {
		if p.Flag != nil && p.Flag.Name == "file" {
			files++
		}
	}
	if files > 1 {
		return usagef("-f/--file given %d times: apply takes one manifest; to apply several to one device, merge them into one file", files)
	}
	return nil
}

// Help is shown by `fleet apply --help`.
func (c *ApplyCmd) Help() string {
	return `Validates the manifest strictly (unknown fields, duplicate ids, bad paths and
modes are refused with the field and the rule) and appends it as the device's
next generation. The write is compare-and-set: if someone else applied in
between, nothing is written and the command exits 1 with a conflict; read
again and retry.

Re-running is safe: if the device's last generation already holds exactly
this manifest from you (same digest, same signature), nothing is written and
the command says which generation it is. A write whose acknowledgement is
lost (the server died after storing it) is retried with the same event id,
which the log stores once; if no answer comes at all, the command exits 1
saying the manifest may be stored: check with 'fleet get device ID' or just
run the same apply again.

Example manifest:
  resources:
    - id: motd
      file: {path: /etc/motd, content: "hello\n", mode: "0644"}

Examples:
  fleet apply -f fixtures/manifests/basic.yaml --device pi-01
  fleet apply -f site.yaml --device pi-01 -o json
  fleet apply -f site.yaml --device pi-01 --dry-run        # the plan: + add, ~ change, - remove
  cat site.yaml | fleet apply -f - --device pi-02 --dry-run -o json
  fleet apply -f empty.yaml --device pi-01 --allow-empty    # remove every resource
  fleet apply -f site.yaml --device pi-01 --key ops.key     # signed
  fleet apply -f kiosk.yaml --selector 'site=lab,role in (kiosk,sign),!canary'
  fleet apply -f kiosk.yaml --selector site=lab --dry-run   # each device's plan
  fleet apply -f empty.yaml --selector site=lab --allow-empty -o json

With --selector the manifest goes to every device the projection service
lists for the selector, each one compare-and-set on its own generation; the
command reports per device (applied, already applied, conflict, error) and
exits 1 if any device was not applied. --dry-run prints each device's plan
against its own generation; a manifest that would remove every resource of
any matching device is refused for all of them without --allow-empty.`
}

// Run validates and appends the manifest.
func (c *ApplyCmd) Run(ctx context.Context, g *Globals) error {
	if c.Selector != "" {
		return c.runSelector(ctx, g)
	}
	if err := events.CheckID("--device", c.Device); err != nil {
		return err
	}
	actor, err := operator()
	if err != nil {
		return err
	}
	m, err := loadManifest(c.File)
	if err != nil {
		return err
	}
	signer, keyID, err := loadSigner(c.Key)
	if err != nil {
		return err
	}
	nc, st, err := g.Store(ctx, "fleet-apply")
	if err != nil {
		if c.DryRun {
			fmt.Fprintf(os.Stderr, "fleet apply: warning: no plan: the current generation cannot be read: %v\n", err)
			return c.printValid(m)
		}
		return err
	}
	defer nc.Close()
	plan, err := planApply(ctx, st, c.Device, m)
	if err != nil {
		return fmt.Errorf("apply to %s: read the current generation: %w", c.Device, err)
	}
	if c.DryRun {
		return c.printPlan(m, plan)
	}
	if plan.removesEverything(m) && !c.AllowEmpty {
		return usagef("manifest %s has no resources: applying it removes all %d resources of %s (%s) from the device; "+
			"give --allow-empty if that is what you want (see the plan with --dry-run)", c.File, len(plan.Current), c.Device, listText(plan.Current))
	}
	warnUnregistered(ctx, st, c.Device)
	clock, _ := events.NewClock(events.ClockState{}, nil)
	floor, seen := generationFloor(ctx, nc, st.JetStream(), c.Device)
	var logGen int64
	if lm, err := st.LastManifest(ctx, c.Device); err == nil {
		logGen = lm.Generation
	}
	res, err := events.ApplyOnceAbove(ctx, st, clock, c.Device, m, actor, signer, floor)
	if err != nil {
		return fmt.Errorf("apply to %s: %w", c.Device, err)
	}
	if floor > logGen {
		fmt.Fprintf(os.Stderr, "fleet apply: warning: the log's last manifest of %s is generation %d but %v: "+
			"the log lost events (see the server's /healthz); applied as generation %d so that no generation is reused\n",
			c.Device, logGen, seen, res.Generation)
	}
	if c.JSON() {
		out := map[string]any{"device": c.Device, "generation": res.Generation, "seq": res.Seq, "id": res.Event.ID, "digest": m.Digest()}
		if keyID != "" {
			out["keyId"] = keyID
		}
		if res.Already {
			out["alreadyApplied"] = true
		}
		return printJSON(out)
	}
	if res.Already {
		fmt.Printf("device %s: already applied as generation %d (sequence %d, by %s); nothing written\n", c.Device, res.Generation, res.Seq, res.Event.Actor)
		return nil
	}
	fmt.Printf("device %s: generation %d applied (%d resources, sequence %d)\n", c.Device, res.Generation, len(m.Resources), res.Seq)
	return nil
}

// readInput reads a file, or standard input for "-".
func readInput(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, events.MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	return b, nil
}
