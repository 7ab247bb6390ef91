package events

import "encoding/json"

// A fast path for Decode. Readers decode every event of the log (the
// projection service, replay, time travel), and encoding/json's reflection
// is most of their cost. fastDecode parses the shape fleet's writers
// produce (the envelope, and the payloads of the frequent types:
// StatusChanged, ReconcileAttempted, DriftDetected, and ManifestApplied with
// the lenient Resource decoding) in one pass. It gives up (ok false) on
// anything else: an unknown, case-folded or repeated key, an envelope string
// with an escape or a non-ASCII byte, null, a non-integer number. Decode
// then runs the standard decoder, so that what is accepted, and every error
// message, stay encoding/json's. When it succeeds, the event is the one the
// standard decoder gives (FuzzFastDecodeMatchesStandard pins that). Payload
// strings with escapes are unquoted by encoding/json itself.
//
// Why by hand: the fast JSON libraries (goccy/go-json, segmentio/encoding,
// bytedance/sonic, go-json-experiment/json) decode the envelope and small
// payloads about as fast as this scanner, but call Resource.UnmarshalJSON
// (encoding/json) for manifests, the costliest events, and each differs from
// encoding/json on some input (case folding, duplicate keys, invalid UTF-8),
// which this scanner avoids by giving up. See BenchmarkDecode.

// DecodeStoredOwned is DecodeStored for a message body handed over to the
// event: on the fast path Data is a part of b, not a copy of it, so b must
// not change afterwards. Readers that decode every message of the log use
// it (nats.go gives each delivered message a buffer of its own). Anything
// the fast path does not take goes to DecodeStored: what is accepted, and
// every error, are DecodeStored's.
func DecodeStoredOwned(b []byte) (Stored, error) {
	if len(b) <= maxEventSize {
		if e, p, ok := fastDecodeData(b, false); ok && e.checkEnvelope() == nil {
			var err error
			if p == nil {
				p, err = e.Payload()
			} else if c, ok := p.(interface{ check() error }); ok {
				err = c.check()
			}
			if err == nil {
				return Stored{Event: e, payload: p}, nil
			}
		}
	}
	return DecodeStored(b)
}

// fastDecode parses an event's envelope and, for the frequent types, its
// payload (p nil: decode Data with Event.Payload). ok false: use the
// standard decoder.
func fastDecode(b []byte) (e Event, p Payload, ok bool) { return fastDecodeData(b, true) }

// fastDecodeData is fastDecode; with copyData false, Data is a part of b.
func fastDecodeData(b []byte, copyData bool) (e Event, p Payload, ok bool) {
	s := &scan{b: b}
	var data []byte
	ok = s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			e.ID, ok = s.str()
		case "type":
			e.Type, ok = s.strShared()
		case "schema":
			e.Schema, ok = s.intN()
		case "device":
			e.Device, ok = s.strShared()
		case "resource":
			e.Resource, ok = s.strShared()
		case "generation":
			e.Generation, ok = s.int()
		case "at":
			e.At, ok = s.time()
		case "actor":
			e.Actor, ok = s.strShared()
		case "causation":
			e.Causation, ok = s.str()
		case "correlation":
			e.Correlation, ok = s.str()
		case "writer", "wseq":
			ok = s.writerField(key, &e) // fastdecode_writer.go
		case "data":
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == '{' {
				// the type came first (as fleet's writers put it): decode
				// the payload while passing over it
				start := s.i
				if p, ok = s.payload(e.Type); ok {
					data = s.b[start:s.i]
					break
				}
				s.i, p = start, nil
				data, ok = s.value(0)
			}
		}
		return ok
	})
	if !ok || data == nil {
		return Event{}, nil, false
	}
	s.ws()
	if s.i != len(b) {
		return Event{}, nil, false
	}
	if copyData {
		data = append([]byte(nil), data...)
	}
	e.Data = json.RawMessage(data[:len(data):len(data)])
	if p == nil {
		p, _ = fastPayload(e.Type, e.Data)
	}
	return e, p, true
}

// fastPayload decodes the payload of the frequent event types in one pass;
// ok is false when the type has no fast path or the data has anything the
// standard decoder must judge.
func fastPayload(typ string, data []byte) (Payload, bool) {
	s := &scan{b: data}
	if p, ok := s.payload(typ); ok && s.i == len(data) {
		return p, true
	}
	return nil, false
}

// payload parses the payload object of an event of type typ at s.i, for
// the types with a fast path; ok false: give up (s.i is then anywhere).
func (s *scan) payload(typ string) (Payload, bool) {
	switch typ {
	case TypeStatusChanged:
		if x, ok := s.status(); ok {
			return x, true
		}
	case TypeReconcileAttempted:
		if x, ok := s.attempt(); ok {
			return x, true
		}
	case TypeDriftDetected:
		if x, ok := s.drift(); ok {
			return x, true
		}
	case TypeManifestApplied:
		if x, ok := s.manifest(); ok {
			return x, true
		}
	}
	return nil, false
}
