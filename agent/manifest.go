package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/fsm"
)

// manifestUpdate is what the manifest watch hands the loop: the device's
// newest manifest, or a message on its manifest subject that does not decode.
type manifestUpdate struct {
	st  events.Stored
	bad *events.BadMessage
}

// watchManifests follows the device's manifest subject until ctx is done.
// It reads the last message of the subject (a direct get), at start, when a
// core subscription on the subject hints that something was published, and
// every manifest poll interval as a safety net (a hint is only a hint: a
// publish the stream refused is seen by the subscription too, which is why
// the stored message is read back), and on every reconnect (a publish while
// the connection was down sent no hint). It works across disconnects: reads
// fail while the server is away and succeed again when it is back.
func (a *Agent) watchManifests(ctx context.Context, conn *logConn, out chan<- manifestUpdate) {
	hint := make(chan struct{}, 1)
	poke := func() {
		select {
		case hint <- struct{}{}:
		default:
		}
	}
	sub, err := conn.nc.Subscribe(events.ManifestSubject(a.device), func(*nats.Msg) { poke() })
	if err != nil {
		a.log.Warn("manifest: no subscription, polling only", "err", err)
	} else {
		defer sub.Unsubscribe()
	}
	var lastSeq uint64
	logged := false
	read := func() (found, failed bool) { // something new was handed over; the read failed
		s, isNew, err := conn.log.LastManifestAfter(ctx, a.device, lastSeq)
		if err == nil {
			if isNew {
				lastSeq = s.Seq
				select {
				case out <- manifestUpdate{st: s}:
				case <-ctx.Done():
				}
				return true, false
			}
			logged = false
			return false, false
		}
		var bad *events.BadMessage
		switch {
		case errors.As(err, &bad):
			if bad.Seq > lastSeq {
				lastSeq = bad.Seq
				select {
				case out <- manifestUpdate{bad: bad}:
				case <-ctx.Done():
				}
				return true, false
			}
		case errors.Is(err, events.ErrNotFound):
			logged = false
		case ctx.Err() != nil:
		default:
			if !logged {
				a.log.Info("manifest: log not reachable, converging from the stored manifest", "err", err)
				logged = true
			}
			return false, true
		}
		return false, false
	}
	// A publish while the connection was down sent no hint: read again on
	// every reconnect, so the poll can be a rare safety net.
	connected := conn.nc.StatusChanged(nats.CONNECTED)
	defer conn.nc.RemoveStatusListener(connected)
	poll := time.NewTicker(a.o.manifestPoll)
	defer poll.Stop()
	// A chase reads again and again until something new is there or its
	// window closes: after a hint (which can arrive well before the stream
	// has stored the message: under load, past a second), and once more
	// after the first read and each reconnect (a publish the server took
	// just before our subscription was in, still being stored). A read that
	// fails keeps the chase going for a minute at least.
	var c chase
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	step := func(found, failed bool, first, window time.Duration) {
		if d, ok := c.next(time.Now(), found, failed, first, window); ok {
			retry.Reset(d)
		}
	}
	found, failed := read()
	step(found, failed, chaseSettle, chaseSettle)
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			if found, failed := read(); failed {
				step(found, failed, chaseSettle, chaseSettle)
			}
		case <-connected:
			found, failed := read()
			step(found, failed, chaseSettle, chaseSettle)
		case <-hint:
			found, failed := read()
			step(found, failed, time.Millisecond, chaseHint)
		case <-retry.C:
			found, failed := read()
			step(found, failed, 0, 0)
		}
	}
}

// handleManifest takes a new manifest or records why it refused it.
func (l *loop) handleManifest(t *txn, m manifestUpdate) error {
	if m.bad != nil {
		if m.bad.Seq <= l.rejectedSeq || (l.manifest != nil && m.bad.Seq <= l.manifest.Seq) {
			return nil
		}
		return l.reject(t, ReasonUndecodable+": "+m.bad.Err.Error(), 0, m.bad.Seq, "", "")
	}
	st := m.st
	if (l.manifest != nil && st.Seq <= l.manifest.Seq) || st.Seq <= l.rejectedSeq {
		return nil
	}
	p, err := st.Payload()
	if err != nil {
		return l.reject(t, ReasonUndecodable+": "+err.Error(), st.Generation, st.Seq, "", st.ID)
	}
	mp, ok := p.(*events.ManifestApplied)
	if !ok {
		return l.reject(t, ReasonUndecodable+": not a ManifestApplied", st.Generation, st.Seq, "", st.ID)
	}
	if err := checkIDs(mp.Manifest); err != nil {
		return l.reject(t, ReasonInvalidManifest+": "+err.Error(), st.Generation, st.Seq, mp.KeyID, st.ID)
	}
	if l.manifest != nil && st.Generation <= l.manifest.Generation {
		return l.reject(t, fmt.Sprintf("%s: generation %d is not newer than %d", ReasonStaleGeneration, st.Generation, l.manifest.Generation),
			st.Generation, st.Seq, mp.KeyID, st.ID)
	}
	if check := l.a.o.manifestCheck; check != nil {
		if err := check(st, mp); err != nil {
			return l.reject(t, err.Error(), st.Generation, st.Seq, mp.KeyID, st.ID)
		}
	}
	rec := &manifestRecord{Seq: st.Seq, Generation: st.Generation, ID: st.ID, Digest: mp.Digest, Manifest: mp.Manifest, KeyID: mp.KeyID}
	if err := t.putJSON(keyManifest, rec); err != nil {
		return err
	}
	l.manifest = rec // Generation() reports it once committed (publishView)
	l.a.log.Info("manifest: new generation", "generation", rec.Generation, "resources", len(rec.Manifest.Resources))
	return l.diff(t)
}

// reject records ManifestRejected; the agent keeps its manifest.
func (l *loop) reject(t *txn, reason string, gen int64, seq uint64, keyID, manifestID string) error {
	kept := int64(0)
	if l.manifest != nil {
		kept = l.manifest.Generation
	}
	l.a.log.Warn("manifest: rejected", "generation", gen, "seq", seq, "reason", reason)
	if _, err := t.emit("", kept, manifestID, manifestID, &events.ManifestRejected{
		Reason: reason, Generation: gen, ManifestSeq: seq, KeyID: keyID, KeptGeneration: kept}); err != nil {
		return err
	}
	l.rejectedSeq = seq
	return t.putJSON(keyRejected, seq)
}

// checkIDs refuses a manifest whose resource ids cannot name subjects or
// repeat: the agent could not record events for them.
func checkIDs(m events.Manifest) error {
	if len(m.Resources) > events.MaxResources {
		return fmt.Errorf("%d resources: must be at most %d", len(m.Resources), events.MaxResources)
	}
	seen := map[string]int{}
	for i, r := range m.Resources {
		if !events.ValidID(r.ID) {
			return fmt.Errorf("resources[%d].id %q: must be %s", i, r.ID, events.IDRule)
		}
		if j, dup := seen[r.ID]; dup {
			return fmt.Errorf("resources[%d].id %q: also the id of resources[%d]", i, r.ID, j)
		}
		seen[r.ID] = i
	}
	return nil
}

// diff brings the managed resources in line with the manifest in force:
// a new or changed spec (by SpecDigest) goes to Pending, a resource no
// longer in the manifest is marked for removal (deleted by the scheduler).
func (l *loop) diff(t *txn) error {
	m := l.manifest
	want := map[string]bool{}
	for _, r := range m.Manifest.Resources {
		want[r.ID] = true
		digest := r.SpecDigest()
		x := l.res[r.ID]
		if x == nil {
			x = &resource{rec: &resourceRecord{ID: r.ID}, m: fsm.NewMachine(fsm.None, nil)}
			l.res[r.ID] = x
		} else if !x.rec.Removing && x.rec.SpecDigest == digest {
			if x.rec.Generation != m.Generation {
				x.rec.Generation = m.Generation
				l.touched[r.ID] = true
				if err := t.putResource(x.rec); err != nil {
					return err
				}
			}
			continue
		}
		x.token++
		rec := x.rec
		rec.Resource, rec.Kind, rec.SpecDigest, rec.Generation = r, r.Kind, digest, m.Generation
		rec.Attempts, rec.Failures, rec.RetryAfter, rec.Reason, rec.Error = 0, 0, time.Time{}, "", ""
		rec.Removing, rec.DriftSeen, rec.Correlation = false, "", m.ID
		x.notified, x.trigger = false, ""
		if err := l.transition(t, x, fsm.SpecChanged, "", "", m.ID); err != nil {
			return err
		}
	}
	for id, x := range l.res {
		if !want[id] && !x.rec.Removing {
			x.rec.Removing, x.rec.RetryAfter, x.rec.Failures = true, time.Time{}, 0
			x.rec.Generation = m.Generation
			x.rec.Correlation = m.ID
			l.touched[id] = true
			if err := t.putResource(x.rec); err != nil {
				return err
			}
		}
	}
	l.rebuildOrder()
	l.watchDirty = true
	return nil
}
