package sim

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/replay"
)

// finish waits for every outbox to drain, stops the agents (each flushes
// what is left), then reads the whole log once: `fleet replay --verify`
// (replay.Verify, from sequence 1) and, per device, the events its agent
// wrote, compared with the agent's own count of what it committed.
func (s *sim) finish(ctx context.Context, rep *Report) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		pending := int64(0)
		for _, d := range s.devs {
			if d.h != nil {
				pending += int64(d.h.Agent.OutboxLen())
			}
		}
		if pending == 0 {
			break
		}
		if sleep(ctx, 100*time.Millisecond) != nil {
			break
		}
	}
	agentCounts := map[string]int64{}
	for _, d := range s.devs {
		if d.h != nil {
			rep.Counts.Undrained += int64(d.h.Agent.OutboxLen())
		}
	}
	s.stopAgents()
	for _, d := range s.devs {
		agentCounts[d.id] = d.committed.Load()
		rep.Counts.AgentEvents += d.committed.Load()
	}
	rep.Counts.Manifests = s.applied
	rep.AgentLog = s.agentLog.snapshot()

	vctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	last, err := s.st.LastSeq(vctx)
	if err != nil {
		return err
	}
	rep.EventsStored = last
	logCounts := map[string]int64{}
	drift := 0
	counted := func(seq iter.Seq2[events.Stored, error]) iter.Seq2[events.Stored, error] {
		return func(yield func(events.Stored, error) bool) {
			for st, err := range seq {
				if err == nil {
					switch {
					case st.Type == events.TypeManifestApplied:
						rep.Counts.LogManifests++
					case strings.HasPrefix(st.Actor, "agent:"):
						logCounts[st.Device]++
						rep.Counts.LogAgentEvents++
						if st.Type == events.TypeDriftDetected {
							drift++
						}
					}
				}
				if !yield(st, err) {
					return
				}
			}
		}
	}
	vr, err := replay.Verify(counted(s.st.Read(vctx, events.Filter{ToSeq: last})), true)
	if err != nil {
		return fmt.Errorf("verify the log: %w", err)
	}
	rep.Verify = Verify{Events: vr.Events, Devices: vr.Devices, Violations: len(vr.Violations), OK: vr.OK(), Summary: vr.SummaryLine()}
	if rep.Drift != nil {
		rep.Drift.Detected = drift
	}
	for id, n := range agentCounts {
		if logCounts[id] != n {
			rep.Counts.DevicesMismatch++
		}
	}
	rep.Counts.Equal = rep.Counts.DevicesMismatch == 0 && rep.Counts.AgentEvents == rep.Counts.LogAgentEvents &&
		rep.Counts.Manifests == rep.Counts.LogManifests && rep.Counts.Undrained == 0
	s.log("%s; agents' counts equal the log's: %v", vr.SummaryLine(), rep.Counts.Equal)
	if !vr.OK() {
		return fmt.Errorf("verify: %s (first: %s)", vr.SummaryLine(), vr.Violations[0])
	}
	if !rep.Counts.Equal {
		return fmt.Errorf("counts: agents committed %d events, the log holds %d of theirs; %d manifests appended, %d in the log; %d devices differ, %d events not drained",
			rep.Counts.AgentEvents, rep.Counts.LogAgentEvents, rep.Counts.Manifests, rep.Counts.LogManifests, rep.Counts.DevicesMismatch, rep.Counts.Undrained)
	}
	return nil
}
