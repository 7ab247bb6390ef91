package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
	"github.com/fleet-dev/fleet/replay"
)

func init() {
	register("import", "Load an NDJSON export into another (empty) server, keeping ids, event times and order.", "History", &ImportCmd{})
}

// ImportCmd is `fleet import`.
type ImportCmd struct {
	File     string `arg:"" placeholder:"FILE" help:"Export to load ('-': standard input); 'fleet replay -o ndjson' output is read too."`
	NonEmpty bool   `name:"into-non-empty" help:"Append even though the target stream already holds events."`
	Verify   bool   `help:"Import ManifestApplied events whose manifest 'fleet apply' would refuse (written by an older fleet), listing each; without it they are refused."`
	Output
}

// Help is shown by `fleet import --help`.
func (c *ImportCmd) Help() string {
	return `Appends every event of an export (from 'fleet export') to the server's log, in
the file's order, in atomic batches. Event ids, event times ('at'), actors and
payloads are kept as they are; stream sequences and stream times are the new
server's (they say when this server stored the events, not when they happened).

The whole file is checked first, and nothing is written unless every line
passes: a line that is not a valid event, an id that appears twice (the stream
stores an id once), a ManifestApplied whose manifest 'fleet apply' would refuse
(unless --verify, which imports it and lists it), or an event larger than the
target stream takes with its headers (the stream's max_msg_size and the
server's max_payload, read from the target) is refused naming the line. A
target stream that already holds events is refused unless --into-non-empty is
given.

Examples:
  fleet server --data /tmp/sandbox --listen 127.0.0.1:4333 --http ''   # an empty sandbox
  fleet import incident.ndjson --nats nats://127.0.0.1:4333
  fleet replay --nats nats://127.0.0.1:4333 --device pi-01
  fleet export --device pi-01 | fleet import - --nats nats://127.0.0.1:4333 -o json
  fleet replay --device pi-01 --since 2h -o ndjson | fleet import - --nats nats://127.0.0.1:4333`
}

// Run checks the file, then imports it.
func (c *ImportCmd) Run(ctx context.Context, g *Globals) error {
	var data []byte
	var err error
	if c.File == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(c.File)
	}
	if err != nil {
		return usagef("import: %v", err)
	}
	nc, st, err := g.Store(ctx, "fleet-import")
	if err != nil {
		return err
	}
	defer nc.Close()
	limits, err := st.Limits(ctx)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	n, flagged, err := checkExport(replay.ReadNDJSON(bytes.NewReader(data)), limits, c.Verify)
	if err != nil {
		return fmt.Errorf("import %s: %w (nothing written)", c.File, err)
	}
	for _, f := range flagged {
		fmt.Fprintf(os.Stderr, "fleet import: %s: imported as it is (--verify)\n", f)
	}
	stream, err := st.JetStream().Stream(ctx, events.Stream)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	held := stream.CachedInfo().State.Msgs
	if held > 0 && !c.NonEmpty {
		return usagef("import: the target stream %s already holds %d events: import into an empty server, or pass --into-non-empty to append", events.Stream, held)
	}
	imported, err := replay.Import(ctx, st, replay.ReadNDJSON(bytes.NewReader(data)), func(done int) {
		if !c.JSON() && done%50000 == 0 {
			fmt.Fprintf(os.Stderr, "imported %d/%d\n", done, n)
		}
	})
	if err != nil {
		return err
	}
	stored := uint64(0)
	if info, err := stream.Info(ctx); err == nil {
		stored = info.State.Msgs - held
	}
	if c.JSON() {
		return printJSON(map[string]any{"file": c.File, "events": imported, "stored": stored, "invalidManifests": flagged})
	}
	fmt.Printf("imported %d events from %s: %d stored, %d already held (same ids)\n", imported, c.File, stored, uint64(imported)-stored)
	return nil
}

// checkExport reads a whole export and refuses the first invalid line,
// repeated id, event too large for limits, or (unless keepInvalid) a
// ManifestApplied whose manifest fails Manifest.Validate. With keepInvalid
// those manifests are returned as flagged, one line each, instead.
func checkExport(seq iter.Seq2[events.Stored, error], limits jsstore.Limits, keepInvalid bool) (int, []string, error) {
	lines := map[string]uint64{}
	var flagged []string
	n := 0
	for s, err := range seq {
		if err != nil {
			var bm *events.BadMessage
			if errors.As(err, &bm) {
				return n, nil, fmt.Errorf("line %d: %w", bm.Seq, bm.Err)
			}
			return n, nil, err
		}
		if first, dup := lines[s.ID]; dup {
			return n, nil, fmt.Errorf("%w: line %d: id %s already on line %d: the stream stores an id once, so the import would not be faithful",
				events.ErrInvalid, s.Seq, s.ID, first)
		}
		lines[s.ID] = s.Seq
		if err := limits.Check(s.Event); err != nil {
			return n, nil, fmt.Errorf("line %d: %w", s.Seq, err)
		}
		if s.Type == events.TypeManifestApplied {
			if err := checkImportedManifest(s); err != nil {
				if !keepInvalid {
					return n, nil, fmt.Errorf("line %d: %w: 'fleet apply' would refuse it (pass --verify to import it as it is and list it)", s.Seq, err)
				}
				flagged = append(flagged, fmt.Sprintf("line %d: %v", s.Seq, err))
			}
		}
		n++
	}
	return n, flagged, nil
}

// checkImportedManifest applies fleet apply's manifest rules to a
// ManifestApplied read from an export.
func checkImportedManifest(s events.Stored) error {
	p, err := s.Payload()
	if err != nil {
		return err
	}
	ma, ok := p.(*events.ManifestApplied)
	if !ok {
		return fmt.Errorf("%w: event %s: payload is not a manifest", events.ErrInvalid, s.ID)
	}
	if err := events.CheckID("device", s.Device); err != nil {
		return fmt.Errorf("manifest %s of %s generation %d: %w", s.ID, s.Device, s.Generation, err)
	}
	if err := ma.Manifest.Validate(); err != nil {
		return fmt.Errorf("manifest %s of %s generation %d: %w", s.ID, s.Device, s.Generation, err)
	}
	return nil
}
