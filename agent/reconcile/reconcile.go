// Package reconcile holds the reconcilers the agent drives, one per resource
// kind. Each is idempotent: Observe compares the device with the spec, Apply
// makes them equal, Delete removes what the resource put there. Every kind
// passes the same contract suite (reconciletest).
package reconcile

import (
	"context"
	"errors"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Target is one resource at one manifest generation, as the agent asks a
// reconciler to handle it.
type Target struct {
	Resource   events.Resource
	Generation int64
}

// Result is what an Apply did.
type Result struct {
	Changed  bool   // something on the device was changed
	Output   string // bounded program output (exec), for the attempt event
	ExitCode *int   // exit status of a program run (exec)
}

// Reconciler converges resources of one kind. Implementations are safe for
// concurrent use on different resources; the agent never runs two calls for
// the same resource at once.
type Reconciler interface {
	// Kind is the manifest kind key this reconciler handles (events.KindFile, ...).
	Kind() string
	// Observe returns how the device differs from the spec; none means
	// converged. It changes nothing.
	Observe(ctx context.Context, t Target) ([]events.Difference, error)
	// Apply makes the device match the spec. Idempotent: applying a
	// converged resource changes nothing and reports Changed=false.
	Apply(ctx context.Context, t Target) (Result, error)
	// Delete removes what the resource put on the device. Idempotent:
	// deleting what is not there succeeds.
	Delete(ctx context.Context, t Target) error
}

// Watcher is an optional capability of a Reconciler: it reports changes on the
// device as they happen (file notifications), so drift is seen before the
// next interval. Watch runs until ctx is done, calling changed with the id of
// a resource whose state may have changed. The agent calls Watch again with
// the new set whenever its resources change.
type Watcher interface {
	Watch(ctx context.Context, ts []Target, changed func(resourceID string)) error
}

// AttemptTimer is an optional capability of a Reconciler whose attempts
// may rightly outlast the agent's attempt timeout (exec: the spec's own
// timeout). AttemptTimeout returns how long one call for t may take, given
// the agent's timeout for an attempt; the agent uses the longest answer of
// the targets of one call. Without it, a call gets the agent's timeout.
type AttemptTimer interface {
	AttemptTimeout(t Target, agentTimeout time.Duration) time.Duration
}

// SpareKeeper is an optional capability of a Reconciler that can keep
// spare storage ready (file: empty files to write new versions into, see
// File.KeepSpares). The agent calls KeepSparesIn once, before any other
// call, with its state directory, under which the reconciler picks a
// folder of its own; an error leaves the reconciler working without spares.
type SpareKeeper interface {
	KeepSparesIn(stateDir string) error
}

// BatchApplier is an optional capability of a Reconciler: it applies many
// resources of its kind in one call, sharing the costly durable steps (for
// files: every temp file is written and fsynced in parallel, then renamed,
// then each distinct directory is fsynced once), and observes each resource
// afterwards. The agent uses it when it has many resources of the kind to
// apply at once (a new manifest).
//
// ApplyBatch returns one BatchResult per target, in order. A nil Err
// promises what Apply followed by an Observe that found no difference
// promises: the device matches the spec, durably. A failure of one target
// does not stop the others. The agent never passes two targets of the same
// resource in one call.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, ts []Target) []BatchResult
}

// BatchResult is the outcome of one target of ApplyBatch.
type BatchResult struct {
	Result
	Err error
}

// ErrRefused marks a resource the agent will not reconcile by policy (a path
// outside the root, exec not allowed). The agent fails it without retrying
// quickly. Reason gives the StatusChanged reason.
var ErrRefused = errors.New("refused")

// RefusedError is a refusal with its reason code (PathEscapesRoot, ExecNotAllowed).
type RefusedError struct {
	Reason string
	Detail string
}

func (e *RefusedError) Error() string { return e.Reason + ": " + e.Detail }
func (e *RefusedError) Unwrap() error { return ErrRefused }

// Restarter is an optional capability of a Reconciler whose resources run
// (container, systemdUnit): Restart stops and starts what the resource runs,
// without changing its spec. The agent calls it when the resource's
// liveness probe fails (events.HealthSpec), never for a resource it is
// applying at the same time.
type Restarter interface {
	Restart(ctx context.Context, t Target) (Result, error)
}
