package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// SystemdUnit reconciles systemdUnit resources: the unit file at
// <root>/etc/systemd/system/<name> (written atomically), its enablement and
// its activity, driven through systemctl (daemon-reload after a content
// change, enable/disable, start/stop, restart when the content changed and
// the unit runs). Safe for concurrent use on different resources.
type SystemdUnit struct {
	root      string
	systemctl string
}

// NewSystemdUnit returns the systemdUnit reconciler; systemctl is the
// program to run ("" means "systemctl" on PATH).
func NewSystemdUnit(root, systemctl string) *SystemdUnit {
	if systemctl == "" {
		systemctl = "systemctl"
	}
	return &SystemdUnit{root: root, systemctl: systemctl}
}

// Kind returns events.KindSystemdUnit.
func (*SystemdUnit) Kind() string { return events.KindSystemdUnit }

// UnitDir is where unit files go under a root.
const UnitDir = "/etc/systemd/system"

func (r *SystemdUnit) unit(t Target) (*events.SystemdUnitSpec, rootedPath, error) {
	u := t.Resource.SystemdUnit
	if u == nil {
		return nil, rootedPath{}, fmt.Errorf("resource %s: not a systemdUnit resource (kind %q)", t.Resource.ID, t.Resource.Kind)
	}
	if u.Name == "" || strings.ContainsAny(u.Name, "/\x00") || u.Name == "." || u.Name == ".." {
		return nil, rootedPath{}, fmt.Errorf("resource %s: systemdUnit.name %q must be a unit file name such as nginx.service", t.Resource.ID, u.Name)
	}
	p, err := resolveUnder(r.root, UnitDir+"/"+u.Name)
	return u, p, err
}

// unitState is what systemd and the disk say about a unit.
type unitState struct {
	file         fileState
	needsReload  bool
	enabledState string // is-enabled output: enabled, disabled, masked, static, ... or "not-found"
	active       string // is-active output: active, inactive, failed, ...
}

func (r *SystemdUnit) observe(ctx context.Context, u *events.SystemdUnitSpec, p rootedPath) (unitState, error) {
	var s unitState
	var err error
	if s.file, err = observeFile(p.full()); err != nil {
		return s, err
	}
	if s.file.kind == "file" {
		out, err := mustTool(ctx, r.systemctl, "show", "-p", "NeedDaemonReload", "--value", u.Name)
		if err != nil {
			return s, err
		}
		s.needsReload = out == "yes"
		out, code, _, err := runTool(ctx, r.systemctl, "is-enabled", u.Name)
		if err != nil {
			return s, err
		}
		s.enabledState = out
		if out == "" && code != 0 {
			s.enabledState = "not-found"
		}
	} else {
		s.enabledState = "not-found"
	}
	out, _, _, err := runTool(ctx, r.systemctl, "is-active", u.Name)
	if err != nil {
		return s, err
	}
	s.active = out
	if s.active == "" {
		s.active = "unknown"
	}
	return s, nil
}

func wantWord(want bool, yes, no string) string {
	if want {
		return yes
	}
	return no
}

func (s unitState) differences(u *events.SystemdUnitSpec) []events.Difference {
	var d []events.Difference
	want := Digest([]byte(u.Content))
	if s.file.kind != "file" || s.file.digest != want {
		d = append(d, events.Difference{Field: "content", Expected: want, Observed: s.file.contentString()})
	} else if s.needsReload {
		d = append(d, events.Difference{Field: "loaded", Expected: "current unit file", Observed: "stale (daemon-reload needed)"})
	}
	if (s.enabledState == "enabled") != u.WantEnabled() {
		d = append(d, events.Difference{Field: "enabled", Expected: wantWord(u.WantEnabled(), "enabled", "disabled"), Observed: s.enabledState})
	}
	if (s.active == "active") != u.WantActive() {
		d = append(d, events.Difference{Field: "active", Expected: wantWord(u.WantActive(), "active", "inactive"), Observed: s.active})
	}
	return d
}

// Observe reports Differences with Field "content" (unit file
// "sha256:<hex>" or "absent"), "loaded" (file changed since the last
// daemon-reload), "enabled" (is-enabled output) and "active" (is-active
// output). It runs only read-only systemctl queries.
func (r *SystemdUnit) Observe(ctx context.Context, t Target) ([]events.Difference, error) {
	u, p, err := r.unit(t)
	if err != nil {
		return nil, err
	}
	s, err := r.observe(ctx, u, p)
	if err != nil {
		return nil, err
	}
	return s.differences(u), nil
}

// Apply writes the unit file when its content differs and runs
// daemon-reload, enables or disables it, and starts, stops or (after a
// content change of a running unit) restarts it. Changed reports whether any
// of these ran.
func (r *SystemdUnit) Apply(ctx context.Context, t Target) (Result, error) {
	u, p, err := r.unit(t)
	if err != nil {
		return Result{}, err
	}
	s, err := r.observe(ctx, u, p)
	if err != nil {
		return Result{}, err
	}
	var res Result
	reloaded := false
	if want := Digest([]byte(u.Content)); s.file.kind != "file" || s.file.digest != want {
		if s.file.kind == "directory" || s.file.kind == "other" {
			return res, fmt.Errorf("unit %s: %s is a %s, not a regular file", u.Name, p.full(), s.file.kind)
		}
		if err := mkdirUnder(r.root, p); err != nil {
			return res, err
		}
		if err := writeAtomic(p.dir, p.name, []byte(u.Content), 0o644, -1, -1); err != nil {
			return res, fmt.Errorf("unit %s: %w", u.Name, err)
		}
		res.Changed = true
		s.needsReload = true
	}
	if s.needsReload {
		if _, err := mustTool(ctx, r.systemctl, "daemon-reload"); err != nil {
			return res, err
		}
		res.Changed, reloaded = true, true
	}
	if enabled := s.enabledState == "enabled"; enabled != u.WantEnabled() {
		if _, err := mustTool(ctx, r.systemctl, wantWord(u.WantEnabled(), "enable", "disable"), u.Name); err != nil {
			return res, err
		}
		res.Changed = true
	}
	active := s.active == "active"
	switch {
	case u.WantActive() && !active:
		_, err = mustTool(ctx, r.systemctl, "start", u.Name)
		res.Changed = true
	case u.WantActive() && reloaded:
		_, err = mustTool(ctx, r.systemctl, "restart", u.Name)
		res.Changed = true
	case !u.WantActive() && active:
		_, err = mustTool(ctx, r.systemctl, "stop", u.Name)
		res.Changed = true
	}
	return res, err
}

// Delete stops and disables the unit, removes its file and runs
// daemon-reload. Deleting a unit that is not there succeeds.
func (r *SystemdUnit) Delete(ctx context.Context, t Target) error {
	u, p, err := r.unit(t)
	if err != nil {
		return err
	}
	s, err := r.observe(ctx, u, p)
	if err != nil {
		return err
	}
	if s.active == "active" {
		if _, err := mustTool(ctx, r.systemctl, "stop", u.Name); err != nil {
			return err
		}
	}
	if s.enabledState == "enabled" {
		if _, err := mustTool(ctx, r.systemctl, "disable", u.Name); err != nil {
			return err
		}
	}
	if s.file.kind == "absent" {
		return nil
	}
	if s.file.kind == "directory" {
		return fmt.Errorf("unit %s: %s is a directory: refusing to remove it", u.Name, p.full())
	}
	if err := os.Remove(p.full()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unit %s: %w", u.Name, err)
	}
	if err := syncDir(p.dir); err != nil {
		return err
	}
	_, err = mustTool(ctx, r.systemctl, "daemon-reload")
	return err
}
