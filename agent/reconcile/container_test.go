package reconcile_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/agent/reconcile/reconciletest"
	"github.com/fleet-dev/fleet/events"
)

func containerTarget(image string) reconcile.Target {
	return reconcile.Target{Generation: 1, Resource: events.Resource{ID: "web", Kind: events.KindContainer,
		Container: &events.ContainerSpec{
			Image:   image,
			Command: []string{"nginx", "-g", "daemon off;"},
			Env:     map[string]string{"B": "2", "A": "1"},
			Ports:   []string{"8080:80/tcp"},
			Volumes: []string{"/srv/www:/usr/share/nginx/html:ro"},
			Restart: "always",
		}}}
}

// standinContainer reads what the stand-in podman keeps for a container.
func standinContainer(t *testing.T, state, name string) (map[string]any, bool) {
	b, err := os.ReadFile(filepath.Join(state, "containers", name+".json"))
	if err != nil {
		return nil, false
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m, true
}

// TestContainerContract runs the contract suite against the stand-in podman.
func TestContainerContract(t *testing.T) {
	reconciletest.Run(t, reconciletest.Case{New: func(t *testing.T) reconciletest.Subject {
		reconciletest.UseStandins(t, standinBin) // stand-in podman on PATH
		changed := containerTarget("nginx:1.28")
		return reconciletest.Subject{
			Reconciler: reconcile.NewContainer(""),
			Target:     containerTarget("nginx:1.27"),
			Changed:    &changed,
			Tamper: func(t *testing.T) {
				if out, err := exec.Command("podman", "stop", "fleet-web").CombinedOutput(); err != nil {
					t.Fatalf("podman stop: %v: %s", err, out)
				}
			},
		}
	}})
}

// TestContainerRunArguments uses the stand-in podman.
func TestContainerRunArguments(t *testing.T) {
	is := is.New(t)
	state := reconciletest.UseStandins(t, standinBin)
	r := reconcile.NewContainer("")
	tg := containerTarget("nginx:1.27")
	_, err := r.Apply(context.Background(), tg)
	is.NoErr(err)
	calls := reconciletest.Calls(t, state)
	digest := reconcile.ContainerDigest(tg.Resource)
	is.Equal(calls[len(calls)-1], "podman run -d --name fleet-web --label fleet.resource=web --label fleet.spec="+digest+
		" --restart always -e A=1 -e B=2 -p 8080:80/tcp -v /srv/www:/usr/share/nginx/html:ro -- nginx:1.27 nginx -g daemon off;")
	c, ok := standinContainer(t, state, "fleet-web")
	is.True(ok)
	is.Equal(c["ImageName"], "nginx:1.27")
	is.Equal(c["Args"], []any{"-g", "daemon off;"})
}

// TestContainerObserveDifferences uses the stand-in podman.
func TestContainerObserveDifferences(t *testing.T) {
	is := is.New(t)
	reconciletest.UseStandins(t, standinBin)
	r := reconcile.NewContainer("")
	ctx := context.Background()
	tg := containerTarget("nginx:1.27")
	digest := reconcile.ContainerDigest(tg.Resource)
	d, err := r.Observe(ctx, tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "spec", Expected: digest, Observed: "absent"}})

	_, err = r.Apply(ctx, tg)
	is.NoErr(err)
	next := containerTarget("nginx:1.28")
	d, err = r.Observe(ctx, next)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "spec", Expected: reconcile.ContainerDigest(next.Resource), Observed: digest}})

	is.NoErr(exec.Command("podman", "stop", "fleet-web").Run())
	d, err = r.Observe(ctx, tg)
	is.NoErr(err)
	is.Equal(d, []events.Difference{{Field: "running", Expected: "running", Observed: "exited"}})

	// A drift-policy change is not a spec change: no recreate.
	tg.Resource.DriftPolicy = events.DriftReport
	is.Equal(reconcile.ContainerDigest(tg.Resource), digest)
}

// TestContainerSpecChangeReplaces uses the stand-in podman.
func TestContainerSpecChangeReplaces(t *testing.T) {
	is := is.New(t)
	state := reconciletest.UseStandins(t, standinBin)
	r := reconcile.NewContainer("")
	ctx := context.Background()
	_, err := r.Apply(ctx, containerTarget("nginx:1.27"))
	is.NoErr(err)
	before, _ := standinContainer(t, state, "fleet-web")
	res, err := r.Apply(ctx, containerTarget("nginx:1.28"))
	is.NoErr(err)
	is.True(res.Changed)
	after, _ := standinContainer(t, state, "fleet-web")
	is.True(before["Id"] != after["Id"]) // a new container
	is.Equal(after["ImageName"], "nginx:1.28")
	calls := reconciletest.Calls(t, state)
	is.Equal(calls[len(calls)-2], "podman rm --force --ignore fleet-web")
}

// TestContainerDeleteLeavesForeignContainer uses the stand-in podman.
func TestContainerDeleteLeavesForeignContainer(t *testing.T) {
	is := is.New(t)
	state := reconciletest.UseStandins(t, standinBin)
	out, err := exec.Command("podman", "run", "-d", "--name", "fleet-web", "busybox").CombinedOutput()
	is.NoErr(err)
	is.True(len(strings.TrimSpace(string(out))) == 64) // a container id, as podman prints
	r := reconcile.NewContainer("")
	is.NoErr(r.Delete(context.Background(), containerTarget("nginx:1.27")))
	_, ok := standinContainer(t, state, "fleet-web")
	is.True(ok) // not ours: left alone
}

// TestStandinsRejectWrongUsage: the stand-ins fail on what the real tools
// would refuse, so a reconciler bug shows up as a failed call.
func TestStandinsRejectWrongUsage(t *testing.T) {
	reconciletest.UseStandins(t, standinBin)
	t.Setenv("FLEET_STANDIN_UNIT_DIR", t.TempDir())
	cases := []struct {
		argv []string
		code int
		msg  string
	}{
		{[]string{"systemctl", "frobnicate", "x.service"}, 1, "Unknown command verb"},
		{[]string{"systemctl", "--bogus", "start", "x.service"}, 1, "unrecognized option"},
		{[]string{"systemctl", "start"}, 1, "Too few arguments"},
		{[]string{"systemctl", "start", "x.service"}, 5, "not found"},
		{[]string{"systemctl", "enable", "x.service"}, 1, "does not exist"},
		{[]string{"systemctl", "is-active", "x.service"}, 3, "inactive"},
		{[]string{"systemctl", "is-enabled", "x.service"}, 1, "No such file"},
		{[]string{"podman", "frobnicate"}, 125, "unrecognized command"},
		{[]string{"podman", "run", "--bogus", "-d", "img"}, 125, "unknown flag"},
		{[]string{"podman", "run", "-d", "--restart", "sometimes", "img"}, 125, "invalid restart policy"},
		{[]string{"podman", "container", "inspect", "nope"}, 125, "no such container"},
		{[]string{"podman", "rm", "nope"}, 1, "no such container"},
		{[]string{"podman", "start", "nope"}, 125, "no such container"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.argv, " "), func(t *testing.T) {
			is := is.New(t)
			out, err := exec.Command(c.argv[0], c.argv[1:]...).CombinedOutput()
			var ee *exec.ExitError
			is.True(err != nil)
			is.True(asExit(err, &ee))
			is.Equal(ee.ExitCode(), c.code)
			is.True(strings.Contains(string(out), c.msg)) // the real tool's message
		})
	}
	// Without a state folder the stand-ins refuse to run at all.
	t.Setenv("FLEET_STANDIN_STATE", "")
	is := is.New(t)
	is.True(exec.Command("podman", "rm", "--ignore", "x").Run() != nil)
	is.True(exec.Command("systemctl", "daemon-reload").Run() != nil)
}

func asExit(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*target = e
	return ok
}
