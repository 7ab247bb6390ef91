package reconcile

import "context"

// Restart restarts the container (podman restart): the same container,
// spec and labels, its process started again.
func (r *Container) Restart(ctx context.Context, t Target) (Result, error) {
	if _, err := containerSpec(t); err != nil {
		return Result{}, err
	}
	out, err := mustTool(ctx, r.podman, "restart", t.Resource.ContainerName())
	return Result{Changed: err == nil, Output: out}, err
}

// Restart restarts the unit (systemctl restart).
func (r *SystemdUnit) Restart(ctx context.Context, t Target) (Result, error) {
	u, _, err := r.unit(t)
	if err != nil {
		return Result{}, err
	}
	out, err := mustTool(ctx, r.systemctl, "restart", u.Name)
	return Result{Changed: err == nil, Output: out}, err
}
