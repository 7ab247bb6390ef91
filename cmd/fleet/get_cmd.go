package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

func init() {
	register("get", "Show the fleet state: every device, or one device's resources and conditions.", "Read side", &GetCmd{})
}

// GetCmd is `fleet get`.
type GetCmd struct {
	Devices GetDevicesCmd `cmd:"" help:"List every device with its readiness and generations."`
	Device  GetDeviceCmd  `cmd:"" help:"Show one device: conditions and every resource's state."`
}

// GetDevicesCmd is `fleet get devices`.
type GetDevicesCmd struct {
	Limit    int    `placeholder:"N" help:"Show at most N devices (0: all)."`
	After    string `placeholder:"ID" help:"Start after this device id (the ids sort as text)."`
	Match    string `short:"q" placeholder:"TEXT" help:"Only devices whose id or a label (key=value) contains TEXT."`
	Status   string `enum:",ready,notready,progressing,degraded,stale" default:"" help:"Only devices that are: ready, notready, progressing, degraded, stale."`
	Selector string `short:"l" placeholder:"SELECTOR" help:"Only devices whose labels match this Kubernetes-style label selector, e.g. 'site=lab,role in (kiosk,sign),!canary'."`
	Output
}

// Help is shown by `fleet get devices --help`.
func (c *GetDevicesCmd) Help() string {
	return `Asks the projection service (inside 'fleet server' or 'fleet project') over NATS,
a page at a time (each page one reply within the NATS payload limit), and prints
every device, however large the fleet. The table shows each device's conditions
and resource counts; -o json prints whole devices as one JSON array.

Examples:
  fleet get devices
  fleet get devices --status degraded            # the demo's pi-12
  fleet get devices -q ring=canary --limit 20
  fleet get devices --selector 'site=lab,ring in (canary,main),!retired'
  fleet get devices -o json --nats nats://10.0.0.5:4222`
}

// GetDeviceCmd is `fleet get device ID`.
type GetDeviceCmd struct {
	ID string `arg:"" placeholder:"ID" help:"Device id."`
	Output
}

// Help is shown by `fleet get device --help`.
func (c *GetDeviceCmd) Help() string {
	return `Shows the device's desired and observed generation, its conditions (Ready,
Progressing, Degraded, Stale) and each resource's state, attempts, last error
and next retry, and, when a rollout matches the device, that rollout: "held by
rollout ID (STATE): why" while it holds the device back (its wave not started,
the rollout paused, paced, the failure budget spent), "in rollout ..." once it
targeted it (-o json: "rollouts"). 'fleet explain ID RESOURCE' says why a
resource is not Ready.

Examples:
  fleet get device pi-01
  fleet get device pi-01 -o json`
}

// readClient connects and returns a client of the projection service.
func readClient(g *Globals) (*api.Client, func(), error) {
	nc, err := g.Connect("fleet-cli")
	if err != nil {
		return nil, nil, err
	}
	// a partitioned read side (fleet project --partition I/N) is merged
	return api.NewClientFor(context.Background(), nc), nc.Close, nil
}

// warnMissing says which partitions of a partitioned read side did not
// answer a list (their devices are not on it).
func warnMissing(cl *api.Client) {
	if m := cl.Missing(); len(m) > 0 {
		fmt.Fprintf(os.Stderr, "fleet get: partition(s) %s of the read side did not answer: their devices are not listed (is 'fleet project --partition %s' running?); the others' are\n",
			strings.Join(m, ", "), m[0])
	}
}

func cond(d projections.Device, t string) string {
	c, ok := d.Condition(t)
	if !ok {
		return "-"
	}
	return c.Status
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// Run lists devices.
func (c *GetDevicesCmd) Run(ctx context.Context, g *Globals) error {
	cl, done, err := readClient(g)
	if err != nil {
		return err
	}
	defer done()
	if c.After != "" {
		if err := events.CheckID("--after", c.After); err != nil {
			return err
		}
	}
	if c.Limit < 0 {
		return fmt.Errorf("%w: --limit %d: must be 0 (all) or more", events.ErrInvalid, c.Limit)
	}
	if _, err := projections.ParseSelector(c.Selector); err != nil {
		return fmt.Errorf("--selector: %w", err)
	}
	o := api.ListOptions{After: c.After, Query: c.Match, Status: c.Status, Selector: c.Selector, Limit: api.MaxLimit}
	defer warnMissing(cl)
	if c.JSON() {
		return c.printJSON(ctx, cl, o)
	}
	ds, _, _, err := cl.EachSummary(ctx, o, c.Limit)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, d := range ds {
		dev := projections.Device{Conditions: d.Conditions}
		rows = append(rows, []string{d.Device, cond(dev, projections.CondReady), fmt.Sprint(d.Generation), fmt.Sprint(d.ObservedGeneration),
			fmt.Sprintf("%d/%d", d.States["Ready"], d.Resources), cond(dev, projections.CondDegraded), cond(dev, projections.CondStale), ago(d.LastSeen)})
	}
	if len(rows) == 0 {
		fmt.Println("no devices yet (register one with 'fleet agent', or apply a manifest)")
		return nil
	}
	return table(os.Stdout, []string{"DEVICE", "READY", "GEN", "OBSERVED", "RESOURCES", "DEGRADED", "STALE", "LAST SEEN"}, rows)
}

// printJSON prints the devices o selects as one JSON array (the shape of
// 'fleet get device -o json' per element), a page at a time, so a large
// fleet is never held whole.
func (c *GetDevicesCmd) printJSON(ctx context.Context, cl *api.Client, o api.ListOptions) error {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	n := 0
	for {
		if c.Limit > 0 && o.Limit > c.Limit-n {
			o.Limit = c.Limit - n
		}
		p, err := cl.DevicesPage(ctx, o)
		if err != nil {
			if n > 0 { // what was printed is not a whole answer
				w.Flush()
				fmt.Fprintln(os.Stderr)
			}
			return err
		}
		for _, d := range p.Devices {
			b, err := json.MarshalIndent(d, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if n == 0 {
				sep = "[\n  "
			}
			w.WriteString(sep)
			w.Write(b)
			n++
		}
		if p.Next == "" || (c.Limit > 0 && n >= c.Limit) {
			break
		}
		o.After = p.Next
	}
	if n == 0 {
		_, err := w.WriteString("[]\n")
		return err
	}
	_, err := w.WriteString("\n]\n")
	return err
}

// Run shows one device.
func (c *GetDeviceCmd) Run(ctx context.Context, g *Globals) error {
	if err := events.CheckID("device", c.ID); err != nil {
		return err
	}
	cl, done, err := readClient(g)
	if err != nil {
		return err
	}
	defer done()
	d, err := cl.Device(ctx, c.ID)
	if err != nil {
		return err
	}
	// the rollouts holding it, read from the log as 'fleet explain' does
	// (api.DeviceView says why at query time); an addition: without the
	// log the device stands alone
	holds, herr := heldBy(ctx, g, c.ID)
	if herr != nil {
		fmt.Fprintf(os.Stderr, "fleet get device: warning: rollouts not read: %v\n", herr)
	}
	if c.JSON() {
		return printJSON(api.DeviceView{Device: d, Rollouts: holds})
	}
	var labels []string
	for k, v := range d.Labels {
		labels = append(labels, k+"="+v)
	}
	fmt.Printf("device %s  generation %d (observed %d)  last event %s  last heartbeat %s\n", d.Device, d.Generation, d.ObservedGeneration, ago(d.LastSeen), ago(d.LastHeartbeat))
	if len(labels) > 0 {
		fmt.Printf("labels %s\n", strings.Join(sorted(labels), ", "))
	}
	printHolds(holds)
	fmt.Println()
	var crow [][]string
	for _, x := range d.Conditions {
		crow = append(crow, []string{x.Type, x.Status, x.Reason, x.Message})
	}
	if err := table(os.Stdout, []string{"CONDITION", "STATUS", "REASON", "MESSAGE"}, crow); err != nil {
		return err
	}
	fmt.Println()
	var rows [][]string
	for _, r := range d.Resources {
		retry := "-"
		if r.RetryAfter != nil {
			retry = r.RetryAfter.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{r.ID, r.Kind, r.State, r.Since.UTC().Format(time.RFC3339), fmt.Sprint(r.Attempts), retry, r.Error})
	}
	return table(os.Stdout, []string{"RESOURCE", "KIND", "STATE", "SINCE", "ATTEMPTS", "RETRY AFTER", "ERROR"}, rows)
}

func sorted(s []string) []string {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s
}
