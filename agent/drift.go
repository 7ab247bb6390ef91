package agent

import (
	"context"
	"errors"

	"github.com/fleet-dev/fleet/agent/reconcile"
)

// Drift: Ready resources are observed again every drift interval (with
// jitter) and whenever a reconciler that is also a reconcile.Watcher reports
// a change. A difference is recorded as DriftDetected, and unless the
// resource's driftPolicy is report, the resource goes back to Reconciling
// and is applied again (see loop.handleResult).

// restartWatchers (re)starts one Watch per watching reconciler with the
// resources of its kind in the manifest in force.
func (l *loop) restartWatchers() {
	l.watchDirty = false
	if l.stopWatch != nil {
		l.stopWatch()
		l.stopWatch = nil
	}
	byKind := map[string][]reconcile.Target{}
	for _, x := range l.res {
		if x.rec.Removing {
			continue
		}
		if _, ok := l.a.recs[x.rec.Kind].(reconcile.Watcher); ok && x.rec.Resource.Problem == "" {
			byKind[x.rec.Kind] = append(byKind[x.rec.Kind], reconcile.Target{Resource: x.rec.Resource, Generation: x.rec.Generation})
		}
	}
	if len(byKind) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.stopWatch = cancel
	changed := func(id string) {
		select {
		case l.notify <- id:
		default: // the interval check catches what a full queue drops
		}
	}
	for kind, ts := range byKind {
		w := l.a.recs[kind].(reconcile.Watcher)
		go func() {
			if err := w.Watch(ctx, ts, changed); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
				l.a.log.Warn("drift: change notifications stopped; interval checks go on", "kind", kind, "err", err)
			}
		}()
	}
}
