// Package events is fleet's log: the event envelope and its typed payloads, the
// manifest schema and its validation, the subjects events live on, the writer
// clock, and the Store contract. The JetStream store is in events/jsstore.
package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Event is the envelope every fact on the log travels in. It is JSON so that
// any NATS client can read the log. Stream sequence and stream time are not
// part of it: they come from JetStream and are carried beside it in Stored.
type Event struct {
	ID          string    `json:"id"`     // ULID; also the Nats-Msg-Id, so a retried append is stored once
	Type        string    `json:"type"`   // one of the Type* constants
	Schema      int       `json:"schema"` // payload version for Type
	Device      string    `json:"device"`
	Resource    string    `json:"resource,omitempty"`
	Generation  int64     `json:"generation"` // manifest generation the event refers to
	At          time.Time `json:"at"`         // the writer's clock, monotonic per writer
	Actor       string    `json:"actor"`      // agent:<device> or user:<name>
	Causation   string    `json:"causation,omitempty"`
	Correlation string    `json:"correlation,omitempty"`
	// Writer and WriterSeq order a writer's events without trusting its
	// clock: Writer names one incarnation of a writer (a ULID the agent
	// makes when its local store is created; a wiped or re-flashed device is
	// a new writer) and WriterSeq counts its events 1, 2, 3... in the order
	// it produced them. Folds deduplicate on (actor, writer, wseq) instead of
	// the id; At may then run back once the writer corrected a clock that
	// was ahead (it says so with ClockSkewDetected). Optional: events
	// without them (older agents, the control plane) are ordered by id.
	Writer    string          `json:"writer,omitempty"`
	WriterSeq uint64          `json:"wseq,omitempty"`
	Data      json.RawMessage `json:"data"`
}

// Stored is an event as read back from the log.
type Stored struct {
	Event
	Seq        uint64    `json:"seq"`
	StreamTime time.Time `json:"streamTime"`
	Subject    string    `json:"subject"`

	payload Payload // Data as decoded by DecodeStored; shared by copies, never modified
}

// Payload returns the decoded payload: the one DecodeStored decoded while
// checking the event, or else Data decoded now (Event.Payload). Callers must
// not modify it: copies of a Stored share it.
func (s Stored) Payload() (Payload, error) {
	if s.payload != nil {
		return s.payload, nil
	}
	return s.Event.Payload()
}

// DecodeStored is Decode for a message read back from the log: the same
// checks and errors, and the payload decoded by the check is kept so that
// Stored.Payload does not decode Data again. The caller sets Seq,
// StreamTime and Subject.
func DecodeStored(b []byte) (Stored, error) {
	e, p, err := decode(b)
	if err != nil {
		return Stored{}, err
	}
	return Stored{Event: e, payload: p}, nil
}

// New builds an event of payload's type with the payload encoded as Data;
// actor must pass CheckActor.
// The caller sets ID and At (see Clock) and the ids that relate it to others.
func New(device, resource string, generation int64, actor string, payload Payload) (Event, error) {
	if err := CheckActor(actor); err != nil {
		return Event{}, err
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return Event{}, fmt.Errorf("encode %s: %w", payload.EventType(), err)
	}
	return Event{
		Type: payload.EventType(), Schema: payload.SchemaVersion(),
		Device: device, Resource: resource, Generation: generation, Actor: actor, Data: data,
	}, nil
}

// Encode returns the wire form of e after checking it.
func Encode(e Event) ([]byte, error) {
	if err := e.Check(); err != nil {
		return nil, err
	}
	return json.Marshal(e)
}

// maxEventSize bounds an event on the wire; the stream refuses larger messages too.
const maxEventSize = 1 << 20

// Decode parses and checks one event from the wire. Unknown envelope fields
// are refused, so a truncated or foreign message is an error, never a
// half-filled event. The payload is checked by Payload.
func Decode(b []byte) (Event, error) {
	e, _, err := decode(b)
	return e, err
}

func decode(b []byte) (Event, Payload, error) {
	var e Event
	if len(b) > maxEventSize {
		return e, nil, fmt.Errorf("%w: event of %d bytes: must be at most %d", ErrInvalid, len(b), maxEventSize)
	}
	if e, p, ok := fastDecode(b); ok {
		if err := e.checkEnvelope(); err == nil {
			if p == nil {
				p, err = e.Payload()
			} else if c, ok := p.(interface{ check() error }); ok {
				err = c.check()
			}
			if err == nil {
				return e, p, nil
			}
		}
		// refused: the standard decoder below gives the canonical error
	}
	return decodeStandard(b)
}

// decodeStandard is decode with encoding/json only.
func decodeStandard(b []byte) (Event, Payload, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, nil, fmt.Errorf("%w: event: %v", ErrInvalid, err)
	}
	if dec.More() {
		return Event{}, nil, fmt.Errorf("%w: event: trailing data after the JSON object", ErrInvalid)
	}
	p, err := e.check()
	if err != nil {
		return Event{}, nil, err
	}
	return e, p, nil
}

// Check validates the envelope: ids, type, schema, time, and a payload that
// decodes as its type.
func (e Event) Check() error {
	_, err := e.check()
	return err
}

// check is Check returning the decoded payload.
func (e Event) check() (Payload, error) {
	if err := e.checkEnvelope(); err != nil {
		return nil, err
	}
	return e.Payload()
}

// checkEnvelope is Check but the payload.
func (e Event) checkEnvelope() error {
	if e.ID == "" {
		return fmt.Errorf("%w: event id: must be set (a ULID)", ErrInvalid)
	}
	if _, err := ParseULID(e.ID); err != nil {
		return fmt.Errorf("%w: event id %q: must be a ULID", ErrInvalid, e.ID)
	}
	spec, ok := payloadTypes[e.Type]
	if !ok {
		return fmt.Errorf("%w: event %s type %q: not an event type fleet knows", ErrInvalid, e.ID, e.Type)
	}
	if spec.noDevice { // a rollout's own decision (rollout.go): no device, the rollout id as resource
		if e.Device != "" {
			return fmt.Errorf("%w: event %s device %q: must be empty for %s (a rollout's decision; the rollout id is the resource)", ErrInvalid, e.ID, e.Device, e.Type)
		}
	} else if err := CheckID("device", e.Device); err != nil {
		return err
	}
	if spec.perResource {
		if err := CheckID("resource", e.Resource); err != nil {
			return err
		}
	} else if e.Resource != "" {
		return fmt.Errorf("%w: event %s resource: must be empty for %s", ErrInvalid, e.ID, e.Type)
	}
	if e.Schema < 1 || e.Schema > spec.schema {
		return fmt.Errorf("%w: event %s schema %d: %s knows schema 1 to %d", ErrInvalid, e.ID, e.Schema, e.Type, spec.schema)
	}
	if e.Generation < 0 {
		return fmt.Errorf("%w: event %s generation %d: must not be negative", ErrInvalid, e.ID, e.Generation)
	}
	if e.At.IsZero() {
		return fmt.Errorf("%w: event %s at: must be set", ErrInvalid, e.ID)
	}
	if (e.Writer == "") != (e.WriterSeq == 0) {
		return fmt.Errorf("%w: event %s writer %q, wseq %d: give both (wseq from 1) or neither", ErrInvalid, e.ID, e.Writer, e.WriterSeq)
	}
	if e.Writer != "" {
		if _, err := ParseULID(e.Writer); err != nil {
			return fmt.Errorf("%w: event %s writer %q: must be a ULID", ErrInvalid, e.ID, e.Writer)
		}
	}
	return nil
}
