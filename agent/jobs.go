package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/agent/reconcile"
	"github.com/fleet-dev/fleet/events"
)

// Reconciler calls: the jobs the scheduler starts (apply, observe, delete,
// restart), a batch of applies of one kind as one call, and running them
// off the loop's goroutine. Their results come back to the loop
// (results.go).

type jobKind int

const (
	jobApply jobKind = iota
	jobObserve
	jobDelete
	jobRestart // a liveness restart (reconcile.Restarter)
)

type job struct {
	kind    jobKind
	x       *resource
	token   int
	attempt int
	target  reconcile.Target
	digest  string
	rc      reconcile.Reconciler
	trigger string // apply: why; observe: interval or notify
}

type result struct {
	job
	diffs []events.Difference
	res   reconcile.Result
	err   error
	dur   time.Duration
}

// call is one reconciler call: one job, or a batch of apply jobs of one
// kind whose reconciler is a reconcile.BatchApplier. It takes one of the
// concurrency slots; its results come back together, handled in one step.
type call struct {
	jobs  []job
	batch reconcile.BatchApplier
}

// maxBatch bounds the resources of one batch call.
const maxBatch = 1000

func (l *loop) newJob(x *resource, kind jobKind, trigger string) job {
	rec := x.rec
	return job{kind: kind, x: x, token: x.token, attempt: rec.Attempts + 1, trigger: trigger,
		target: reconcile.Target{Resource: rec.Resource, Generation: rec.Generation},
		digest: rec.SpecDigest, rc: l.a.recs[rec.Kind]}
}

// start runs one reconciler call in its own goroutine; its results come
// back together on l.results.
func (l *loop) start(workCtx context.Context, c call) {
	timeout := l.a.o.attemptTimeout
	for _, j := range c.jobs {
		if at, ok := j.rc.(reconcile.AttemptTimer); ok {
			timeout = max(timeout, at.AttemptTimeout(j.target, l.a.o.attemptTimeout))
		}
	}
	go func() {
		ctx, cancel := context.WithTimeout(workCtx, timeout)
		defer cancel()
		if c.batch != nil {
			l.results <- runBatch(ctx, c)
			return
		}
		l.results <- []result{runJob(ctx, c.jobs[0])}
	}()
}

// runJob runs one job: apply then observe, observe, or delete.
func runJob(ctx context.Context, j job) (r result) {
	r.job = j
	begun := time.Now()
	defer func() { r.dur = time.Since(begun) }()
	defer func() {
		if p := recover(); p != nil {
			r.err = fmt.Errorf("reconciler panic: %v", p)
		}
	}()
	switch j.kind {
	case jobApply:
		r.res, r.err = j.rc.Apply(ctx, j.target)
		if r.err == nil {
			diffs, err := j.rc.Observe(ctx, j.target)
			switch {
			case err != nil:
				r.err = fmt.Errorf("observe after apply: %w", err)
			case len(diffs) > 0:
				r.err = fmt.Errorf("still differs after apply: %s", describe(diffs))
			}
		}
	case jobObserve:
		r.diffs, r.err = j.rc.Observe(ctx, j.target)
	case jobDelete:
		r.err = j.rc.Delete(ctx, j.target)
	case jobRestart:
		r.res, r.err = j.rc.(reconcile.Restarter).Restart(ctx, j.target)
	}
	return r
}

// runBatch runs a batch of applies; the batch applier observes each
// resource after applying it. Each attempt's duration is the batch's.
func runBatch(ctx context.Context, c call) (rs []result) {
	rs = make([]result, len(c.jobs))
	ts := make([]reconcile.Target, len(c.jobs))
	for i, j := range c.jobs {
		rs[i].job = j
		ts[i] = j.target
	}
	begun := time.Now()
	defer func() {
		p := recover()
		dur := time.Since(begun)
		for i := range rs {
			rs[i].dur = dur
			if p != nil {
				rs[i].err = fmt.Errorf("reconciler panic: %v", p)
			}
		}
	}()
	out := c.batch.ApplyBatch(ctx, ts)
	for i := range rs {
		if i >= len(out) {
			rs[i].err = fmt.Errorf("batch apply returned %d results for %d resources", len(out), len(rs))
			continue
		}
		rs[i].res, rs[i].err = out[i].Result, out[i].Err
	}
	return rs
}

// describe renders differences for an error text.
func describe(diffs []events.Difference) string {
	parts := make([]string, len(diffs))
	for i, d := range diffs {
		parts[i] = fmt.Sprintf("%s: want %q, have %q", d.Field, d.Expected, d.Observed)
	}
	return strings.Join(parts, "; ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(truncated)"
}
