package timetravel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/projections"
)

// Subject is the request/reply subject of the time-travel micro service
// (outside fleet.>, which the stream captures).
const (
	ServiceName = "fleet-timetravel"
	Subject     = "fleetapi.timetravel.at"
)

// MaxCatchUp is how long the micro service waits for the index to reach a
// query's MinSeq before answering with what it has.
const MaxCatchUp = 2 * time.Second

// Reply is the reply of the micro service.
type Reply struct {
	Device     projections.Device `json:"device"`
	Exists     bool               `json:"exists"`
	Stats      Stats              `json:"stats"`
	Checkpoint uint64             `json:"checkpoint"` // the index had taken in the log up to here
	// Note says what the log no longer has for this question (a time
	// before its first event: retention removed it), else empty.
	Note string `json:"note,omitempty"`
}

// Log is what the index needs of the log: its batched follow and where it
// begins and ends (events.Store has both).
type Log = projections.Log

// Follow keeps x up to date with the log: it is the read side's runtime
// (projections.Service.Run, as the projection service) with the index's
// model. It follows from the checkpoint on, a batch at a time, each batch
// one Pebble write with the checkpoint, until ctx is done. The Pebble
// checkpoint is the source of truth, so no consumer state lives on the
// server; after a restart it resumes exactly after the last batch written.
// A failure (the server gone for a moment, a write that failed) is logged
// with its cause (WithLogger), the first at once and then at most once a
// minute with a count, counted in RunStats, and following resumes from
// the checkpoint a second later. A log that went backwards or lost events
// the index had not taken in halts it (Health says why).
func (x *Index) Follow(ctx context.Context, log Log) error { return x.svc.Run(ctx, log) }

// WaitFor blocks until the index has taken in the log up to seq, or ctx is done.
func (x *Index) WaitFor(ctx context.Context, seq uint64) error { return x.svc.WaitFor(ctx, seq) }

// Serve adds the micro service: a request is a Query (JSON), the reply a Reply.
// log, if not nil, says where the log begins, so that an answer about a
// time before it says what the log no longer has (horizon.go).
func (x *Index) Serve(nc *nats.Conn, log LogStarter) (micro.Service, error) {
	return micro.AddService(nc, micro.Config{
		Name: ServiceName, Version: "0.1.0",
		Description: "fleet time travel: a device as it was at a time or a stream position",
		Endpoint: &micro.EndpointConfig{Subject: Subject, Handler: micro.HandlerFunc(func(r micro.Request) {
			var q Query
			if err := json.Unmarshal(r.Data(), &q); err != nil {
				_ = r.Error("400", "request: must be JSON {device, at, seq}: "+err.Error(), nil)
				return
			}
			if err := events.CheckID("device", q.Device); err != nil {
				_ = r.Error("400", err.Error(), nil)
				return
			}
			if q.MinSeq > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), MaxCatchUp)
				_ = x.WaitFor(ctx, q.MinSeq) // on timeout, answer as far as it got; Checkpoint tells
				cancel()
			}
			d, ok, st, err := x.Answer(q)
			switch {
			case errors.Is(err, events.ErrNotFound):
				_ = r.Error("404", err.Error(), nil)
			case err != nil:
				_ = r.Error("500", err.Error(), nil)
			default:
				rep := Reply{Device: d, Exists: ok, Stats: st, Checkpoint: x.Checkpoint()}
				if log != nil {
					hctx, cancel := context.WithTimeout(context.Background(), time.Second)
					if h, err := LogHorizon(hctx, log); err == nil {
						rep.Note = h.Note(q)
					}
					cancel()
				}
				_ = r.RespondJSON(rep)
			}
		})},
	})
}

// HTTPHandler serves GET /api/devices/{id}/at?t=RFC3339 (or ?seq=N): the
// device JSON as it was then; 404 if the device did not exist then.
func (x *Index) HTTPHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q, err := queryFromHTTP(r)
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		d, ok, st, err := x.Answer(q)
		switch {
		case errors.Is(err, events.ErrNotFound):
			httpError(w, http.StatusNotFound, err.Error())
			return
		case err != nil:
			httpError(w, http.StatusInternalServerError, err.Error())
			return
		case !ok:
			httpError(w, http.StatusNotFound, fmt.Sprintf("device %s did not exist then", q.Device))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Fleet-Checkpoint", strconv.FormatUint(x.Checkpoint(), 10))
		w.Header().Set("Fleet-Folded", strconv.Itoa(st.Folded))
		_ = json.NewEncoder(w).Encode(d)
	}
}

func queryFromHTTP(r *http.Request) (Query, error) {
	q := Query{Device: r.PathValue("id")}
	if err := events.CheckID("device", q.Device); err != nil {
		return q, err
	}
	if t := r.URL.Query().Get("t"); t != "" {
		at, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return q, fmt.Errorf("t %q: must be RFC 3339 (2026-05-01T12:00:00Z)", t)
		}
		q.At = at
	}
	if s := r.URL.Query().Get("seq"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return q, fmt.Errorf("seq %q: must be a stream sequence, a positive integer", s)
		}
		q.Seq = n
	}
	if !q.At.IsZero() && q.Seq > 0 {
		return q, errors.New("t and seq: give one")
	}
	return q, nil
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// Ask asks a running time-travel service. It returns an error wrapping
// events.ErrUnavailable when none answers (the caller falls back to FoldAt).
func Ask(ctx context.Context, nc *nats.Conn, q Query) (Reply, error) {
	req, err := json.Marshal(q)
	if err != nil {
		return Reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, Subject, req)
	if err != nil {
		return Reply{}, fmt.Errorf("time-travel service: %w: %w", events.ErrUnavailable, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
		desc := m.Header.Get(micro.ErrorHeader)
		switch code {
		case "404":
			return Reply{}, fmt.Errorf("%s: %w", desc, events.ErrNotFound)
		case "400":
			return Reply{}, fmt.Errorf("%w: %s", events.ErrInvalid, desc)
		}
		return Reply{}, fmt.Errorf("time-travel service: %s", desc)
	}
	var rep Reply
	if err := json.Unmarshal(m.Data, &rep); err != nil {
		return Reply{}, fmt.Errorf("time-travel service reply: %w", err)
	}
	return rep, nil
}
