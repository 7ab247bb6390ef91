package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// Labels the container reconciler puts on the containers it runs.
const (
	LabelResource = "fleet.resource" // the resource id
	LabelSpec     = "fleet.spec"     // ContainerDigest of the spec it was run with
)

// Container reconciles container resources through podman: a container whose
// fleet.spec label differs from the spec's digest (or is missing) is removed
// and run again; a stopped one is started. Safe for concurrent use on
// different resources.
type Container struct {
	podman string
}

// NewContainer returns the container reconciler; podman is the program to
// run ("" means "podman" on PATH).
func NewContainer(podman string) *Container {
	if podman == "" {
		podman = "podman"
	}
	return &Container{podman: podman}
}

// Kind returns events.KindContainer.
func (*Container) Kind() string { return events.KindContainer }

// ContainerDigest is the sha256 of the container spec's canonical JSON (with
// its name resolved): the value of the fleet.spec label. Changing the drift
// policy of a resource does not change it, so it does not recreate the
// container; nor does changing its health probes (the agent runs them).
func ContainerDigest(r events.Resource) string {
	c := *r.Container
	c.Name = r.ContainerName()
	c.Health = nil
	b, _ := json.Marshal(c) // map keys are sorted: canonical
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// inspected is the part of `podman container inspect` the reconciler reads.
type inspected struct {
	ID    string `json:"Id"`
	Name  string `json:"Name"`
	State struct {
		Status  string `json:"Status"`
		Running bool   `json:"Running"`
	} `json:"State"`
	Config struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

func containerSpec(t Target) (*events.ContainerSpec, error) {
	if t.Resource.Container == nil {
		return nil, fmt.Errorf("resource %s: not a container resource (kind %q)", t.Resource.ID, t.Resource.Kind)
	}
	return t.Resource.Container, nil
}

// inspect returns the container of that name, or nil if there is none.
func (r *Container) inspect(ctx context.Context, name string) (*inspected, error) {
	out, code, stderr, err := runTool(ctx, r.podman, "container", "inspect", "--format", "json", name)
	if err != nil {
		return nil, err
	}
	var cs []inspected
	if jerr := json.Unmarshal([]byte(out), &cs); jerr != nil && code == 0 {
		return nil, fmt.Errorf("podman container inspect %s: unreadable output: %v", name, jerr)
	}
	if code != 0 {
		if strings.Contains(stderr, "no such container") {
			return nil, nil
		}
		return nil, fmt.Errorf("podman container inspect %s: exit status %d: %s", name, code, stderr)
	}
	if len(cs) == 0 {
		return nil, nil
	}
	return &cs[0], nil
}

func (c *inspected) differences(digest string) []events.Difference {
	if c == nil {
		return []events.Difference{{Field: "spec", Expected: digest, Observed: "absent"}}
	}
	if got := c.Config.Labels[LabelSpec]; got != digest {
		if got == "" {
			got = "unlabelled"
		}
		return []events.Difference{{Field: "spec", Expected: digest, Observed: got}}
	}
	if !c.State.Running {
		status := c.State.Status
		if status == "" {
			status = "false"
		}
		return []events.Difference{{Field: "running", Expected: "running", Observed: status}}
	}
	return nil
}

// Observe reports Field "spec" (Expected the spec digest, Observed the
// container's fleet.spec label, "absent" or "unlabelled") or, when the spec
// matches, Field "running" (Observed the podman state, e.g. "exited").
func (r *Container) Observe(ctx context.Context, t Target) ([]events.Difference, error) {
	if _, err := containerSpec(t); err != nil {
		return nil, err
	}
	c, err := r.inspect(ctx, t.Resource.ContainerName())
	if err != nil {
		return nil, err
	}
	return c.differences(ContainerDigest(t.Resource)), nil
}

// runArgs is the podman run command line of a spec.
func runArgs(res events.Resource, digest string) []string {
	c := res.Container
	args := []string{"run", "-d", "--name", res.ContainerName(),
		"--label", LabelResource + "=" + res.ID, "--label", LabelSpec + "=" + digest}
	if c.Restart != "" {
		args = append(args, "--restart", c.Restart)
	}
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "-e", k+"="+c.Env[k])
	}
	for _, p := range c.Ports {
		args = append(args, "-p", p)
	}
	for _, v := range c.Volumes {
		args = append(args, "-v", v)
	}
	args = append(args, "--", c.Image)
	return append(args, c.Command...)
}

// Apply runs the container when it is missing, removes and runs it again
// when its fleet.spec label differs from the spec, and starts it when it is
// stopped. A converged container is left alone (Changed=false).
func (r *Container) Apply(ctx context.Context, t Target) (Result, error) {
	if _, err := containerSpec(t); err != nil {
		return Result{}, err
	}
	name, digest := t.Resource.ContainerName(), ContainerDigest(t.Resource)
	c, err := r.inspect(ctx, name)
	if err != nil {
		return Result{}, err
	}
	d := c.differences(digest)
	if len(d) == 0 {
		return Result{}, nil
	}
	if d[0].Field == "running" {
		_, err := mustTool(ctx, r.podman, "start", name)
		return Result{Changed: true}, err
	}
	if c != nil {
		if _, err := mustTool(ctx, r.podman, "rm", "--force", "--ignore", name); err != nil {
			return Result{}, err
		}
	}
	if _, err := mustTool(ctx, r.podman, runArgs(t.Resource, digest)...); err != nil {
		return Result{Changed: c != nil}, err
	}
	return Result{Changed: true}, nil
}

// Delete removes the container if this resource ran it (its fleet.resource
// label names the resource); a container of that name that fleet did not
// run for this resource is left alone. Deleting what is not there succeeds.
func (r *Container) Delete(ctx context.Context, t Target) error {
	if _, err := containerSpec(t); err != nil {
		return err
	}
	name := t.Resource.ContainerName()
	c, err := r.inspect(ctx, name)
	if err != nil || c == nil {
		return err
	}
	if c.Config.Labels[LabelResource] != t.Resource.ID {
		return nil
	}
	_, err = mustTool(ctx, r.podman, "rm", "--force", "--ignore", name)
	return err
}
