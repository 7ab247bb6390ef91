package sim

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Report is what a simulation measured. Durations are in milliseconds,
// CPU as a share of one core (1.0 = one core busy), memory in bytes.
type Report struct {
	Scenario  string `json:"scenario"`
	Devices   int    `json:"devices"`
	Resources int    `json:"resources"`
	Root      string `json:"root"`  // memory-backed directory of roots and stores
	Store     string `json:"store"` // what local state each device has

	StartSeconds float64 `json:"startSeconds"` // all agents connected and started
	// Nice is how many nice levels below the server the simulated devices
	// ran (Config.Nice).
	Nice int `json:"nice"`

	// Initial is the first generation (K new files) reaching every device.
	Initial *ReadyStats `json:"initial,omitempty"`
	// Rollout is the measured new generation (rollout scenario).
	Rollout *ReadyStats `json:"rollout,omitempty"`
	Floor   *Floor      `json:"floor,omitempty"`

	// Phase is the measured phase: the idle window, the rollout, the outage
	// and reconnect, the drift window.
	PhaseSeconds  float64 `json:"phaseSeconds"`
	EventsStored  uint64  `json:"eventsStored"`  // FLEET messages at the end
	PhaseEvents   uint64  `json:"phaseEvents"`   // appended during the phase
	EventsPerSec  float64 `json:"eventsPerSec"`  // PhaseEvents / PhaseSeconds
	HeartbeatPuts uint64  `json:"heartbeatPuts"` // heartbeat KV writes during the phase

	Server Usage `json:"server"` // fleet server: embedded JetStream + projections
	Agents Usage `json:"agents"` // this process: N agents and the simulator

	Lag LagStats `json:"projectionLag"`

	Wire Wire `json:"wire"`

	Durable Durable `json:"durableWrites"`

	Reconnect *ReconnectStats `json:"reconnect,omitempty"`
	Drift     *DriftStats     `json:"drift,omitempty"`

	Verify Verify `json:"verify"`
	Counts Counts `json:"counts"`

	// AgentLog counts the agents' warnings and errors by message.
	AgentLog []LogCount `json:"agentLog"`
}

// ReadyStats is desired → Ready for the fleet, from the read model: per
// device, from the moment the simulator appended its manifest to the time
// the read model says its last resource became Ready.
type ReadyStats struct {
	Generation int64   `json:"generation"`
	Ready      int     `json:"ready"` // devices Ready at the end
	P50        float64 `json:"p50Ms"`
	P99        float64 `json:"p99Ms"`
	Max        float64 `json:"maxMs"`
	// All is from the first manifest appended to the last device Ready (in
	// the read model's times); Seen is when the simulator saw the whole
	// fleet Ready in the read model (polled every second).
	All       float64 `json:"allMs"`
	Seen      float64 `json:"seenMs"`
	ApplyMs   float64 `json:"applyMs"`   // time to append every device's manifest
	ApplyWith string  `json:"applyWith"` // events.ApplyMany or events.Apply
	Events    uint64  `json:"events"`    // events the generation added to the log
	Manifests int     `json:"manifests"`
}

// Floor is the raw floor of a rollout: bare clients publishing the same
// number of events in the same batch shapes to the same server.
type Floor struct {
	Manifests int `json:"manifests"` // with a compare-and-set each, in batches of ManifestBatch
	// ManifestBatch is how many manifest publishes are in flight together,
	// as the rollout appended them (ApplyMany: 1,000 pipelined; Apply: one
	// round trip a device, 64 devices at a time).
	ManifestBatch int     `json:"manifestBatch"`
	Events        int     `json:"events"` // agent events, in the agents' batch shapes
	Batches       int     `json:"batches"`
	Ms            float64 `json:"ms"`
	Ratio         float64 `json:"ratio"` // rollout all / floor
	Note          string  `json:"note"`
}

// Usage is CPU and memory of a process over the phase.
type Usage struct {
	CPU     float64 `json:"cpuCores"`   // share of one core, averaged over the phase
	CPUSecs float64 `json:"cpuSeconds"` // CPU time used in the phase
	RSS     int64   `json:"rssBytes"`   // at the end of the phase
	PerDev  int64   `json:"rssPerDeviceBytes,omitempty"`
	Note    string  `json:"note,omitempty"`
	Measure bool    `json:"measured"`
}

// LagStats is how long an event takes from being stored to being in the
// read model: the simulator notes the stream's last sequence and times how
// long until the projection checkpoint reaches it.
type LagStats struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50Ms"`
	P99     float64 `json:"p99Ms"`
	Max     float64 `json:"maxMs"`
}

// Wire is client-side traffic of the agents' connections over the phase.
type Wire struct {
	// BytesPerDevicePerDay counts everything on the socket (protocol,
	// headers, pings), from a counting dialer on each connection.
	BytesPerDevicePerDay float64 `json:"bytesPerDevicePerDay"`
	// PayloadPerDevicePerDay is nats.Conn Statistics (message payloads only).
	PayloadPerDevicePerDay float64 `json:"payloadBytesPerDevicePerDay"`
	InBytes                int64   `json:"inBytes"`
	OutBytes               int64   `json:"outBytes"`
	Note                   string  `json:"note,omitempty"`
}

// Durable is what the server wrote durably during the phase. nats-server
// does not expose an fsync counter; with fsync before ack every stored
// message (stream or KV) is one durable write, so these are the write rates.
type Durable struct {
	FsyncsExposed  bool    `json:"fsyncsExposed"`
	EventsPerSec   float64 `json:"eventsPerSec"`
	HeartbeatsPerS float64 `json:"heartbeatsPerSec"`
	Note           string  `json:"note"`
}

// ReconnectStats is the server killed (SIGKILL) and restarted under the agents.
type ReconnectStats struct {
	OutageMs         float64 `json:"outageMs"`
	ServerStartMs    float64 `json:"serverStartMs"`    // from the restart to the server's ready line (agents reconnect before it)
	PendingAtRestart int64   `json:"pendingAtRestart"` // outbox events on all devices when the server came back
	Reconnected99    float64 `json:"reconnected99Ms"`  // from the restart (the new process started)
	ReconnectedAll   float64 `json:"reconnectedAllMs"`
	Drained99        float64 `json:"drained99Ms"` // 99% of devices connected with an empty outbox
	DrainedAll       float64 `json:"drainedAllMs"`
	Reconnected      int     `json:"reconnected"`
	Drained          int     `json:"drained"`
}

// DriftStats is the drift scenario: 1% of devices tampered with a minute.
type DriftStats struct {
	Rounds    int     `json:"rounds"`
	Tampered  int     `json:"tampered"`  // files modified
	Corrected int     `json:"corrected"` // back to their content (checked on disk)
	Detected  int     `json:"detected"`  // DriftDetected events in the log
	P50       float64 `json:"p50Ms"`     // tamper → corrected on disk
	P99       float64 `json:"p99Ms"`
}

// Verify is `fleet replay --verify` of the whole log at the end.
type Verify struct {
	Events     int    `json:"events"`
	Devices    int    `json:"devices"`
	Violations int    `json:"violations"`
	OK         bool   `json:"ok"`
	Summary    string `json:"summary"`
}

// Counts compares what the agents say they wrote with what the log holds.
type Counts struct {
	AgentEvents     int64 `json:"agentEvents"`     // committed by the agents (their own count)
	LogAgentEvents  int64 `json:"logAgentEvents"`  // in the log, written by agents
	Manifests       int64 `json:"manifests"`       // appended by the simulator
	LogManifests    int64 `json:"logManifests"`    // in the log
	DevicesMismatch int   `json:"devicesMismatch"` // devices whose counts differ
	Undrained       int64 `json:"undrained"`       // outbox events not drained at the end
	Equal           bool  `json:"equal"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile of sorted-in-place durations (nearest rank).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Print writes the report as text.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "fleet sim: %s, %d devices x %d files (root %s)\n", r.Scenario, r.Devices, r.Resources, r.Root)
	fmt.Fprintf(w, "  local state:      %s\n", r.Store)
	fmt.Fprintf(w, "  agents started:   %.1fs (at nice +%d below the server)\n", r.StartSeconds, r.Nice)
	rs := func(name string, x *ReadyStats) {
		if x == nil {
			return
		}
		fmt.Fprintf(w, "  %s gen %d: %d/%d devices Ready; desired->Ready p50 %.0f ms, p99 %.0f ms, all %.0f ms (seen %.0f ms); manifests appended in %.0f ms; %d events\n",
			name, x.Generation, x.Ready, r.Devices, x.P50, x.P99, x.All, x.Seen, x.ApplyMs, x.Events)
	}
	rs("initial", r.Initial)
	rs("rollout", r.Rollout)
	if f := r.Floor; f != nil {
		fmt.Fprintf(w, "  raw floor:        %d manifests + %d events in %d batches: %.0f ms; rollout/floor %.2fx\n", f.Manifests, f.Events, f.Batches, f.Ms, f.Ratio)
	}
	fmt.Fprintf(w, "  phase:            %.1fs, %d events (%.1f/s), %d heartbeat writes; log holds %d events\n",
		r.PhaseSeconds, r.PhaseEvents, r.EventsPerSec, r.HeartbeatPuts, r.EventsStored)
	if r.Server.Measure {
		fmt.Fprintf(w, "  server+projections: %.1f%% of a core (%.1f s CPU), RSS %s\n", 100*r.Server.CPU, r.Server.CPUSecs, mib(r.Server.RSS))
	} else {
		fmt.Fprintf(w, "  server+projections: not measured (%s)\n", r.Server.Note)
	}
	fmt.Fprintf(w, "  agents (this process): %.1f%% of a core (%.1f s CPU), RSS %s (%s a device)\n", 100*r.Agents.CPU, r.Agents.CPUSecs, mib(r.Agents.RSS), mib(r.Agents.PerDev))
	fmt.Fprintf(w, "  projection lag:   p50 %.1f ms, p99 %.1f ms (%d samples)\n", r.Lag.P50, r.Lag.P99, r.Lag.Samples)
	fmt.Fprintf(w, "  wire:             %.0f bytes a device a day on the socket (%.0f payload)\n", r.Wire.BytesPerDevicePerDay, r.Wire.PayloadPerDevicePerDay)
	fmt.Fprintf(w, "  durable writes:   %.1f events/s + %.1f heartbeats/s (fsyncs not exposed by the server: %s)\n", r.Durable.EventsPerSec, r.Durable.HeartbeatsPerS, r.Durable.Note)
	if x := r.Reconnect; x != nil {
		fmt.Fprintf(w, "  reconnect:        outage %.0f ms (server ready %.0f ms after its restart), %d outbox events pending; 99%% reconnected %.0f ms, all %.0f ms; 99%% drained %.0f ms, all %.0f ms (%d/%d)\n",
			x.OutageMs, x.ServerStartMs, x.PendingAtRestart, x.Reconnected99, x.ReconnectedAll, x.Drained99, x.DrainedAll, x.Drained, r.Devices)
	}
	if x := r.Drift; x != nil {
		fmt.Fprintf(w, "  drift:            %d rounds, %d files tampered, %d corrected, %d DriftDetected; tamper->corrected p50 %.0f ms, p99 %.0f ms\n",
			x.Rounds, x.Tampered, x.Corrected, x.Detected, x.P50, x.P99)
	}
	for i, l := range r.AgentLog {
		if i == 0 {
			fmt.Fprintf(w, "  agent log:        ")
		} else {
			fmt.Fprintf(w, "                    ")
		}
		fmt.Fprintf(w, "%d x %s\n", l.Count, l.Message)
		if i == 4 {
			break
		}
	}
	fmt.Fprintf(w, "  verify:           %s\n", r.Verify.Summary)
	fmt.Fprintf(w, "  counts:           agents %d = log %d, manifests %d = log %d, %d devices differ, %d undrained: equal %v\n",
		r.Counts.AgentEvents, r.Counts.LogAgentEvents, r.Counts.Manifests, r.Counts.LogManifests, r.Counts.DevicesMismatch, r.Counts.Undrained, r.Counts.Equal)
}
