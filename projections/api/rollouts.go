package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/rollout"
)

// RolloutView is a rollout's read model as the API and the dashboard show
// it: the fold of its events (rollout.Rollout) and, per wave, its device
// counts and gate.
type RolloutView struct {
	*rollout.Rollout
	WaveGates []WaveGate `json:"waveGates"`
	Budget    string     `json:"budget"`              // failures used and allowed
	WaitingOn string     `json:"waitingOn,omitempty"` // the gate being waited on, and why
	AsOf      *time.Time `json:"asOf,omitempty"`      // time travel: the moment shown
}

// WaveGate is one wave's devices and gate. Passed, Failed, Waiting and
// Offline are judged (rollouts.Judge) for the wave in progress only: now,
// or in time travel with the devices as they were then (the time-travel
// index, rollouts.Past; no heartbeats in the past, so none offline); a
// passed wave counts its targeted devices as passed.
type WaveGate struct {
	Wave     int    `json:"wave"`
	Size     string `json:"size"`  // as given to --waves
	State    string `json:"state"` // waiting, in progress, passed, failed
	Devices  int    `json:"devices"`
	Targeted int    `json:"targeted"`
	Passed   int    `json:"passed"`
	Failed   int    `json:"failed"`
	Waiting  int    `json:"waiting"`
	Offline  int    `json:"offline"`
}

// RolloutHold says how a rollout holds a device: the rollout, its state,
// the device's wave and the wave in progress, whether the device is held
// (matched but not targeted: its wave not started, the rollout paused, or
// paced by --max-per-minute) and why.
type RolloutHold struct {
	Rollout string `json:"rollout"`
	State   string `json:"state"`
	Wave    int    `json:"wave"`
	Current int    `json:"current"`
	Held    bool   `json:"held"`
	Reason  string `json:"reason"`
}

// Rollouts is what the rollout routes read (rollouts.Reader has it).
type Rollouts interface {
	List(ctx context.Context) ([]RolloutView, error)
	// Get is one rollout now, or as it was at a time or stream sequence
	// (zero: now); events.ErrNotFound if unknown (then).
	Get(ctx context.Context, id string, at time.Time, seq uint64) (RolloutView, error)
	// HeldBy lists the rollouts not ended that match the device.
	HeldBy(ctx context.Context, device string) ([]RolloutHold, error)
}

// RolloutRoutes registers the rollout API on mux:
//
//	GET /api/rollouts                 every rollout, a RolloutView each
//	GET /api/rollouts/{id}            one; ?t=RFC3339 or ?seq=N: as it was then (time travel, from the log)
//	GET /api/devices/{id}/rollouts    the rollouts holding the device (RolloutHold), with the reason
//
// Live: a page listens to GET /api/stream (the same SSE stream as the
// devices') and fetches the rollout again on each notice: a "changed" for
// its devices, or the "status" that comes every 2 s (a decision that moves
// no device is seen within that).
func RolloutRoutes(mux *http.ServeMux, rs Rollouts) {
	mux.HandleFunc("GET /api/rollouts", func(w http.ResponseWriter, r *http.Request) {
		v, err := rs.List(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		if v == nil {
			v = []RolloutView{}
		}
		writeJSON(w, v)
	})
	mux.HandleFunc("GET /api/rollouts/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := events.CheckID("rollout", id); err != nil {
			writeError(w, err)
			return
		}
		var at time.Time
		var seq uint64
		if t := r.URL.Query().Get("t"); t != "" {
			var err error
			if at, err = time.Parse(time.RFC3339Nano, t); err != nil {
				writeError(w, fmt.Errorf("%w: t %q: must be an RFC 3339 time", events.ErrInvalid, t))
				return
			}
		}
		if s := r.URL.Query().Get("seq"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil || n == 0 {
				writeError(w, fmt.Errorf("%w: seq %q: must be a stream sequence, 1 or more", events.ErrInvalid, s))
				return
			}
			seq = n
		}
		if !at.IsZero() && seq > 0 {
			writeError(w, fmt.Errorf("%w: t and seq: give one", events.ErrInvalid))
			return
		}
		v, err := rs.Get(r.Context(), id, at, seq)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, v)
	})
	mux.HandleFunc("GET /api/devices/{id}/rollouts", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := events.CheckID("device", id); err != nil {
			writeError(w, err)
			return
		}
		v, err := rs.HeldBy(r.Context(), id)
		if err != nil {
			writeError(w, err)
			return
		}
		if v == nil {
			v = []RolloutHold{}
		}
		writeJSON(w, v)
	})
}
