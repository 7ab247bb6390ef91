package reconcile_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
)

func unitTarget(name, content string, enabled, active bool) reconcile.Target {
	return reconcile.Target{Generation: 1, Resource: events.Resource{ID: "unit", Kind: events.KindSystemdUnit,
		SystemdUnit: &events.SystemdUnitSpec{Name: name, Content: content, Enabled: &enabled, Active: &active}}}
}

const unitV1 = "[Unit]\nDescription=web\n[Service]\nExecStart=/usr/bin/web\n[Install]\nWantedBy=multi-user.target\n"
const unitV2 = "[Unit]\nDescription=web v2\n[Service]\nExecStart=/usr/bin/web --v2\n[Install]\nWantedBy=multi-user.target\n"

// systemdDevice is a temp root with the stand-in systemctl first on PATH.
func systemdDevice(t *testing.T) (root, state string) {
	root = t.TempDir()
	state = reconciletest.UseStandins(t, standinBin) // stand-in systemctl, state in a temp folder
	t.Setenv("FLEET_STANDIN_UNIT_DIR", filepath.Join(root, reconcile.UnitDir))
	return root, state
}

func standinFile(t *testing.T, state, rel string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(state, rel))
	if err != nil {
		return "", false
	}
	return string(b), true
}

// TestSystemdUnitContract runs the contract suite against the stand-in systemctl.
func TestSystemdUnitContract(t *testing.T) {
	reconciletest.Run(t, reconciletest.Case{New: func(t *testing.T) reconciletest.Subject {
		root, state := systemdDevice(t)
		changed := unitTarget("web.service", unitV2, true, true)
		return reconciletest.Subject{
			Reconciler: reconcile.NewSystemdUnit(root, ""),
			Target:     unitTarget("web.service", unitV1, true, true),
			Changed:    &changed,
			Tamper: func(t *testing.T) {
				// Someone stopped the service behind the agent's back.
				if err := os.Remove(filepath.Join(state, "active", "web.service")); err != nil {
					t.Fatal(err)
				}
			},
		}
	}})
}

// TestSystemdUnitApplyRunsSystemctl uses the stand-in systemctl.
func TestSystemdUnitApplyRunsSystemctl(t *testing.T) {
	is := is.New(t)
	root, state := systemdDevice(t)
	r := reconcile.NewSystemdUnit(root, "")
	ctx := context.Background()

	res, err := r.Apply(ctx, unitTarget("web.service", unitV1, true, true))
	is.NoErr(err)
	is.True(res.Changed)
	b, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/web.service"))
	is.NoErr(err)
	is.Equal(string(b), unitV1)
	running, ok := standinFile(t, state, "active/web.service")
	is.True(ok)
	is.Equal(running, unitV1) // started with the file as written
	_, ok = standinFile(t, state, "enabled/web.service")
	is.True(ok)
	is.True(slices.Contains(reconciletest.Calls(t, state), "systemctl daemon-reload"))

	// A content change reloads and restarts: the service runs the new content.
	res, err = r.Apply(ctx, unitTarget("web.service", unitV2, true, true))
	is.NoErr(err)
	is.True(res.Changed)
	running, _ = standinFile(t, state, "active/web.service")
	is.Equal(running, unitV2)
	calls := reconciletest.Calls(t, state)
	is.Equal(calls[len(calls)-2:], []string{"systemctl daemon-reload", "systemctl restart web.service"})

	// Converged: only queries run.
	n := len(reconciletest.Calls(t, state))
	res, err = r.Apply(ctx, unitTarget("web.service", unitV2, true, true))
	is.NoErr(err)
	is.True(!res.Changed)
	for _, c := range reconciletest.Calls(t, state)[n:] {
		is.True(slices.Contains([]string{
			"systemctl show -p NeedDaemonReload --value web.service",
			"systemctl is-enabled web.service",
			"systemctl is-active web.service",
		}, c)) // nothing but queries on a converged unit
	}

	// Disabled and inactive wanted: stop and disable.
	res, err = r.Apply(ctx, unitTarget("web.service", unitV2, false, false))
	is.NoErr(err)
	is.True(res.Changed)
	_, ok = standinFile(t, state, "active/web.service")
	is.True(!ok)
	_, ok = standinFile(t, state, "enabled/web.service")
	is.True(!ok)
	d, err := r.Observe(ctx, unitTarget("web.service", unitV2, false, false))
	is.NoErr(err)
	is.Equal(len(d), 0)
}

// TestSystemdUnitObserveDifferences uses the stand-in systemctl.
func TestSystemdUnitObserveDifferences(t *testing.T) {
	is := is.New(t)
	root, state := systemdDevice(t)
	r := reconcile.NewSystemdUnit(root, "")
	ctx := context.Background()
	tg := unitTarget("web.service", unitV1, true, true)
	d, err := r.Observe(ctx, tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{
		{Field: "content", Expected: reconcile.Digest([]byte(unitV1)), Observed: "absent"},
		{Field: "enabled", Expected: "enabled", Observed: "not-found"},
		{Field: "active", Expected: "active", Observed: "inactive"},
	})
	_, err = r.Apply(ctx, tg)
	is.NoErr(err)
	// Edited on disk without daemon-reload, then put back to the spec's
	// content: the file matches but systemd has not loaded it.
	unit := filepath.Join(root, "etc/systemd/system/web.service")
	is.NoErr(os.WriteFile(unit, []byte(unitV2), 0o644))
	d, err = r.Observe(ctx, tg)
	is.NoErr(err)
	is.Equal(d[0].Field, "content")
	is.NoErr(os.Remove(filepath.Join(state, "enabled/web.service")))
	is.NoErr(os.WriteFile(filepath.Join(state, "loaded/web.service"), []byte("old"), 0o644))
	is.NoErr(os.WriteFile(unit, []byte(unitV1), 0o644))
	d, err = r.Observe(ctx, tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{
		{Field: "loaded", Expected: "current unit file", Observed: "stale (daemon-reload needed)"},
		{Field: "enabled", Expected: "enabled", Observed: "disabled"},
	})
	res, err := r.Apply(ctx, tg)
	is.NoErr(err)
	is.True(res.Changed)
	running, _ := standinFile(t, state, "active/web.service")
	is.Equal(running, unitV1) // restarted after the reload
}

// TestSystemdUnitDeleteRemovesEverything uses the stand-in systemctl.
func TestSystemdUnitDeleteRemovesEverything(t *testing.T) {
	is := is.New(t)
	root, state := systemdDevice(t)
	r := reconcile.NewSystemdUnit(root, "")
	ctx := context.Background()
	tg := unitTarget("web.service", unitV1, true, true)
	_, err := r.Apply(ctx, tg)
	is.NoErr(err)
	is.NoErr(r.Delete(ctx, tg))
	for _, p := range []string{"active/web.service", "enabled/web.service", "loaded/web.service"} {
		_, ok := standinFile(t, state, p)
		is.True(!ok) // stopped, disabled, unloaded
	}
	_, err = os.Stat(filepath.Join(root, "etc/systemd/system/web.service"))
	is.True(os.IsNotExist(err))
}

func TestSystemdUnitBadNameRefusedBeforeRunning(t *testing.T) {
	is := is.New(t)
	root, state := systemdDevice(t) // stand-in systemctl: must not be called
	r := reconcile.NewSystemdUnit(root, "")
	_, err := r.Apply(context.Background(), unitTarget("../../evil.service", unitV1, true, true))
	is.True(err != nil)
	is.Equal(len(reconciletest.Calls(t, state)), 0)
}
