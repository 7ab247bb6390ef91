package agent

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Heartbeat is the value an agent puts under its device id in the
// events.HeartbeatBucket KV bucket. Heartbeats are not history: the bucket's
// TTL forgets them.
type Heartbeat struct {
	Device       string         `json:"device"`
	At           time.Time      `json:"at"`
	Generation   int64          `json:"generation"`
	AgentVersion string         `json:"agentVersion"`
	Counts       map[string]int `json:"counts"`           // resources by state
	Outbox       int            `json:"outbox"`           // events not yet acknowledged by the log
	Parked       int            `json:"parked,omitempty"` // events the log refused, kept on the device
}

type heartbeat = Heartbeat

// sendBeat hands the current heartbeat to the heartbeat writer, replacing
// one it has not written yet.
func (l *loop) sendBeat(beats chan heartbeat, now time.Time) {
	hb := Heartbeat{Device: l.a.device, At: now.UTC(), Generation: l.a.Generation(), AgentVersion: Version,
		Counts: map[string]int{}, Outbox: l.a.OutboxLen(), Parked: l.a.Parked()}
	for _, x := range l.res {
		hb.Counts[string(x.rec.State)]++
	}
	select {
	case <-beats:
	default:
	}
	beats <- hb
}

// heartbeats writes heartbeats to the KV bucket until ctx is done. A missing
// bucket (no `fleet server` created it) is logged once; the agent goes on.
func (a *Agent) heartbeats(ctx context.Context, conn *logConn, beats <-chan heartbeat) {
	loggedMissing, loggedDown := false, false
	var clockChecked time.Time // wall time of the last clock measurement (zero: none since start)
	for {
		var hb heartbeat
		select {
		case <-ctx.Done():
			return
		case hb = <-beats:
		}
		if !conn.nc.IsConnected() {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		b, _ := json.Marshal(hb)
		err := conn.log.PutHeartbeat(pctx, a.device, b)
		cancel()
		if (err == nil || errors.Is(err, events.ErrNotFound)) && (clockChecked.IsZero() || a.wall().Sub(clockChecked) >= clockCheckEvery || a.wall().Before(clockChecked)) {
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			local, server, merr := a.measureClock(cctx, conn.log)
			if merr == nil {
				clockChecked = a.wall()
				if _, cerr := a.checkClock(local, server); cerr != nil {
					a.log.Error("clock skew: not recorded", "err", cerr)
				}
			} else if ctx.Err() == nil {
				a.log.Debug("clock: not measured", "err", merr)
			}
			cancel()
		}
		switch {
		case err == nil:
			loggedDown = false
		case errors.Is(err, events.ErrNotFound):
			if !loggedMissing {
				a.log.Warn("heartbeat: bucket missing (created by 'fleet server'); going on without heartbeats", "bucket", events.HeartbeatBucket)
				loggedMissing = true
			}
		default:
			if !loggedDown && ctx.Err() == nil {
				a.log.Info("heartbeat: not written", "err", err)
				loggedDown = true
			}
		}
	}
}
