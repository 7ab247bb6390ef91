package events

import (
	"bytes"
	"encoding/json"
	"hash/maphash"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

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

type scan struct {
	b []byte
	i int
}

func (s *scan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// tok consumes c after optional white space.
func (s *scan) tok(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// rawStr returns a string's bytes (without quotes) if it has no escape and
// only printable ASCII; the standard decoder gives the same string then.
func (s *scan) rawStr() ([]byte, bool) {
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		c := s.b[j]
		if c == '"' {
			s.i = j + 1
			return s.b[start:j], true
		}
		if c == '\\' || c < 0x20 || c >= 0x7f {
			return nil, false
		}
	}
	return nil, false
}

// text parses any string a payload may hold, as the standard decoder
// does: plain and valid UTF-8 directly, one-letter escapes here, and a \u
// escape or bytes that are not valid UTF-8 with encoding/json itself.
func (s *scan) text() (string, bool) {
	s.ws()
	start := s.i
	if !s.skipStr() {
		return "", false
	}
	lit := s.b[start+1 : s.i-1]
	if !utf8.Valid(lit) {
		return s.textStandard(start)
	}
	esc := bytes.IndexByte(lit, '\\')
	if esc < 0 {
		if w, ok := word(lit); ok {
			return w, true
		}
		return string(lit), true
	}
	// the one-letter escapes; \u (and its surrogate rules) go to encoding/json
	out := make([]byte, 0, len(lit))
	for esc >= 0 {
		out = append(out, lit[:esc]...)
		var c byte
		switch lit[esc+1] {
		case '"', '\\', '/':
			c = lit[esc+1]
		case 'n':
			c = '\n'
		case 't':
			c = '\t'
		case 'r':
			c = '\r'
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		default:
			return s.textStandard(start)
		}
		out = append(out, c)
		lit = lit[esc+2:]
		esc = bytes.IndexByte(lit, '\\')
	}
	return string(append(out, lit...)), true
}

// textShared is text for a string that recurs on many events (a
// resource's id in a manifest): shared, as strShared, when it is plain.
func (s *scan) textShared() (string, bool) {
	start := s.i
	if b, ok := s.rawStr(); ok {
		return shared(b), true
	}
	s.i = start
	return s.text()
}

// textStandard unquotes the string literal from start to s.i with encoding/json.
func (s *scan) textStandard(start int) (string, bool) {
	var v string
	if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
		return "", false
	}
	return v, true
}

// texts parses a list of strings ([] is an empty list, as the standard
// decoder gives; null gives up).
func (s *scan) texts() ([]string, bool) {
	if !s.tok('[') {
		return nil, false
	}
	out := []string{}
	if s.tok(']') {
		return out, true
	}
	for {
		v, ok := s.text()
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if s.tok(']') {
			return out, true
		}
		if !s.tok(',') {
			return nil, false
		}
	}
}

func (s *scan) str() (string, bool) {
	b, ok := s.rawStr()
	return string(b), ok
}

// strShared is str for strings that recur on many events (device,
// resource, actor, type): the same text gives a string shared with earlier
// events, not a new one (see shared).
func (s *scan) strShared() (string, bool) {
	b, ok := s.rawStr()
	if !ok {
		return "", false
	}
	if w, ok := word(b); ok {
		return w, true
	}
	return shared(b), true
}

// word returns the string constant equal to b, for the words fleet's
// writers put on most events (types, kinds, states, triggers, outcomes,
// policies), so that decoding them allocates nothing.
func word(b []byte) (string, bool) {
	switch string(b) {
	case TypeStatusChanged:
		return TypeStatusChanged, true
	case TypeReconcileAttempted:
		return TypeReconcileAttempted, true
	case TypeDriftDetected:
		return TypeDriftDetected, true
	case TypeManifestApplied:
		return TypeManifestApplied, true
	case TypeDeviceRegistered:
		return TypeDeviceRegistered, true
	case TypeDeviceDeregistered:
		return TypeDeviceDeregistered, true
	case TypeManifestRejected:
		return TypeManifestRejected, true
	case KindFile:
		return KindFile, true
	case KindSystemdUnit:
		return KindSystemdUnit, true
	case KindContainer:
		return KindContainer, true
	case KindExec:
		return KindExec, true
	case "Pending":
		return "Pending", true
	case "Reconciling":
		return "Reconciling", true
	case "Ready":
		return "Ready", true
	case "Failed":
		return "Failed", true
	case "Removed":
		return "Removed", true
	case "specChanged":
		return "specChanged", true
	case "reconcile":
		return "reconcile", true
	case OutcomeSucceeded:
		return OutcomeSucceeded, true
	case OutcomeFailed:
		return OutcomeFailed, true
	case "removed":
		return "removed", true
	case "spec":
		return "spec", true
	case "retry":
		return "retry", true
	case "drift":
		return "drift", true
	case "resume":
		return "resume", true
	case DriftCorrect:
		return DriftCorrect, true
	case DriftReport:
		return DriftReport, true
	case "interval":
		return "interval", true
	case "notify":
		return "notify", true
	case "UnknownKind":
		return "UnknownKind", true
	case "":
		return "", true
	}
	return "", false
}

// sharedStrings caches recently decoded ids (devices, resources, actors):
// two slots per hash of the text, one replaced on a miss. Lock-free and
// bounded; at worst (more ids in turn than slots) a decode allocates as it
// would without it. The same text keeps giving the same string, so that
// maps keyed by it compare pointers, not bytes.
var (
	sharedStrings [2 * 8192]atomic.Pointer[string]
	sharedSeed    = maphash.MakeSeed()
)

// shared returns string(b), from sharedStrings when it holds it.
func shared(b []byte) string {
	h := maphash.Bytes(sharedSeed, b)
	set := sharedStrings[2*(h%(uint64(len(sharedStrings))/2)):][:2]
	p0, p1 := set[0].Load(), set[1].Load()
	if p0 != nil && *p0 == string(b) {
		return *p0
	}
	if p1 != nil && *p1 == string(b) {
		return *p1
	}
	v := string(b)
	switch {
	case p0 == nil:
		set[0].Store(&v)
	case p1 == nil:
		set[1].Store(&v)
	default:
		set[(h>>32)&1].Store(&v)
	}
	return v
}

// intN parses an integer that fits Go's int (32 bits on some Pis).
func (s *scan) intN() (int, bool) {
	n, ok := s.int()
	if !ok || int64(int(n)) != n {
		return 0, false
	}
	return int(n), true
}

// int parses an integer in JSON's grammar (no fraction, no exponent).
func (s *scan) int() (int64, bool) {
	s.ws()
	start := s.i
	j := s.i
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	d := j
	for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
		j++
	}
	if j == d || (s.b[d] == '0' && j > d+1) {
		return 0, false
	}
	if j < len(s.b) {
		switch s.b[j] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(s.b[start:j]), 10, 64)
	if err != nil {
		return 0, false
	}
	s.i = j
	return n, true
}

func (s *scan) bool() (bool, bool) {
	s.ws()
	switch {
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		s.i += 4
		return true, true
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		s.i += 5
		return false, true
	}
	return false, false
}

// time parses a quoted time the way time.Time's UnmarshalJSON does.
func (s *scan) time() (time.Time, bool) {
	s.ws()
	start := s.i
	if _, ok := s.rawStr(); !ok {
		return time.Time{}, false
	}
	var t time.Time
	if err := t.UnmarshalJSON(s.b[start:s.i]); err != nil {
		return time.Time{}, false
	}
	return t, true
}

// value skips one JSON value, checking its grammar, and returns its bytes.
func (s *scan) value(depth int) ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i >= len(s.b) || depth > 100 {
		return nil, false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		s.i++
		if s.tok('}') {
			return s.b[start:s.i], true
		}
		for {
			s.ws()
			if !s.skipStr() || !s.tok(':') {
				return nil, false
			}
			if _, ok := s.value(depth + 1); !ok {
				return nil, false
			}
			if s.tok('}') {
				return s.b[start:s.i], true
			}
			if !s.tok(',') {
				return nil, false
			}
		}
	case c == '[':
		s.i++
		if s.tok(']') {
			return s.b[start:s.i], true
		}
		for {
			if _, ok := s.value(depth + 1); !ok {
				return nil, false
			}
			if s.tok(']') {
				return s.b[start:s.i], true
			}
			if !s.tok(',') {
				return nil, false
			}
		}
	case c == '"':
		if !s.skipStr() {
			return nil, false
		}
	case c == '-' || (c >= '0' && c <= '9'):
		if !s.skipNumber() {
			return nil, false
		}
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
				s.i += len(lit)
				return s.b[start:s.i], true
			}
		}
		return nil, false
	}
	return s.b[start:s.i], true
}

// skipStr skips a string with any valid escapes (the standard decoder
// accepts any byte >= 0x20 but '"' and '\' unescaped).
func (s *scan) skipStr() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			s.i = j + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			j++
			if j >= len(s.b) {
				return false
			}
			switch s.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[j+1 : j+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return false
					}
				}
				j += 4
			default:
				return false
			}
		}
	}
	return false
}

func (s *scan) skipNumber() bool {
	j := s.i
	digits := func() int {
		n := 0
		for j < len(s.b) && s.b[j] >= '0' && s.b[j] <= '9' {
			j++
			n++
		}
		return n
	}
	if j < len(s.b) && s.b[j] == '-' {
		j++
	}
	d := j
	if n := digits(); n == 0 || (s.b[d] == '0' && n > 1) {
		return false
	}
	if j < len(s.b) && s.b[j] == '.' {
		j++
		if digits() == 0 {
			return false
		}
	}
	if j < len(s.b) && (s.b[j] == 'e' || s.b[j] == 'E') {
		j++
		if j < len(s.b) && (s.b[j] == '+' || s.b[j] == '-') {
			j++
		}
		if digits() == 0 {
			return false
		}
	}
	s.i = j
	return true
}

// object calls field for every key of an object; field consumes the value
// and returns false to give up. Repeated keys give up. The key's bytes are
// the input's: field must copy what it keeps (string(key) in a switch does
// not allocate).
func (s *scan) object(field func(key []byte) bool) bool {
	if !s.tok('{') {
		return false
	}
	if s.tok('}') {
		return true
	}
	var seen [16][]byte
	n := 0
	for {
		key, ok := s.rawStr()
		if !ok || !s.tok(':') {
			return false
		}
		for _, x := range seen[:n] {
			if bytes.Equal(x, key) {
				return false
			}
		}
		if n == len(seen) {
			return false
		}
		seen[n] = key
		n++
		if !field(key) {
			return false
		}
		if s.tok('}') {
			return true
		}
		if !s.tok(',') {
			return false
		}
	}
}

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

func (s *scan) status() (*StatusChanged, bool) {
	p := &StatusChanged{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "from":
			p.From, ok = s.text()
		case "to":
			p.To, ok = s.text()
		case "trigger":
			p.Trigger, ok = s.text()
		case "reason":
			p.Reason, ok = s.text()
		case "error":
			p.Error, ok = s.text()
		case "attempts":
			p.Attempts, ok = s.intN()
		case "retryAfter":
			var t time.Time
			if t, ok = s.time(); ok {
				p.RetryAfter = &t
			}
		}
		return ok
	})
	return p, ok
}

func (s *scan) attempt() (*ReconcileAttempted, bool) {
	p := &ReconcileAttempted{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "attempt":
			p.Attempt, ok = s.intN()
		case "trigger":
			p.Trigger, ok = s.text()
		case "durationNs":
			var n int64
			n, ok = s.int()
			p.Duration = time.Duration(n)
		case "outcome":
			p.Outcome, ok = s.text()
		case "error":
			p.Error, ok = s.text()
		case "changed":
			p.Changed, ok = s.bool()
		case "output":
			p.Output, ok = s.text()
		case "exitCode":
			var x int
			if x, ok = s.intN(); ok {
				p.ExitCode = &x
			}
		case "specDigest":
			p.SpecDigest, ok = s.text()
		}
		return ok
	})
	return p, ok
}

func (s *scan) drift() (*DriftDetected, bool) {
	p := &DriftDetected{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "policy":
			p.Policy, ok = s.text()
		case "source":
			p.Source, ok = s.text()
		case "differences":
			if !s.tok('[') {
				return false
			}
			p.Differences = []Difference{}
			if s.tok(']') {
				return true
			}
			for {
				var d Difference
				if !s.object(func(key []byte) bool {
					var ok bool
					switch string(key) {
					case "field":
						d.Field, ok = s.text()
					case "expected":
						d.Expected, ok = s.text()
					case "observed":
						d.Observed, ok = s.text()
					}
					return ok
				}) {
					return false
				}
				p.Differences = append(p.Differences, d)
				if s.tok(']') {
					return true
				}
				if !s.tok(',') {
					return false
				}
			}
		}
		return ok
	})
	return p, ok
}

// manifest parses a ManifestApplied payload whose resources each have a
// string id, an optional string driftPolicy and exactly one kind key: a
// known kind's spec with only its own fields (exact names, no nulls), or
// any value under a kind this build does not know (kept as Raw). That is
// what Resource.UnmarshalJSON gives for such input; anything else (a
// resource with a Problem, a case-folded or unknown field, a null) gives
// up, and Event.Payload decodes it.
func (s *scan) manifest() (*ManifestApplied, bool) {
	p := &ManifestApplied{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "manifest":
			ok = s.object(func(key []byte) bool {
				if string(key) != "resources" || !s.tok('[') {
					return false
				}
				p.Manifest.Resources = []Resource{}
				if s.tok(']') {
					return true
				}
				for {
					var r Resource
					if !s.resource(&r) {
						return false
					}
					p.Manifest.Resources = append(p.Manifest.Resources, r)
					if s.tok(']') {
						return true
					}
					if !s.tok(',') {
						return false
					}
				}
			})
		case "digest":
			p.Digest, ok = s.text()
		case "signature":
			p.Signature, ok = s.text()
		case "keyId":
			p.KeyID, ok = s.text()
		}
		return ok
	})
	return p, ok
}

// resource parses one resource of a manifest (see manifest).
func (s *scan) resource(r *Resource) bool {
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			r.ID, ok = s.textShared() // the id events name the resource by
			return ok
		case "driftPolicy":
			r.DriftPolicy, ok = s.text()
			return ok
		}
		if r.Kind != "" {
			return false // a second kind key: the resource has a Problem
		}
		r.Kind = string(key)
		switch string(key) {
		case KindFile:
			r.File = &FileSpec{}
			return s.fileSpec(r.File)
		case KindSystemdUnit:
			r.SystemdUnit = &SystemdUnitSpec{}
			return s.unitSpec(r.SystemdUnit)
		case KindContainer:
			r.Container = &ContainerSpec{}
			return s.containerSpec(r.Container)
		case KindExec:
			r.Exec = &ExecSpec{}
			return s.execSpec(r.Exec)
		}
		raw, ok := s.value(0)
		r.Raw = append(json.RawMessage(nil), raw...)
		return ok
	})
	return ok && r.Kind != ""
}

func (s *scan) fileSpec(f *FileSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "path":
			f.Path, ok = s.text()
		case "content":
			f.Content, ok = s.text()
		case "mode":
			f.Mode, ok = s.text()
		case "owner":
			f.Owner, ok = s.text()
		case "group":
			f.Group, ok = s.text()
		}
		return ok
	})
}

func (s *scan) unitSpec(u *SystemdUnitSpec) bool {
	return s.object(func(key []byte) bool {
		var ok, v bool
		switch string(key) {
		case "name":
			u.Name, ok = s.text()
		case "content":
			u.Content, ok = s.text()
		case "enabled":
			if v, ok = s.bool(); ok {
				u.Enabled = &v
			}
		case "active":
			if v, ok = s.bool(); ok {
				u.Active = &v
			}
		}
		return ok
	})
}

func (s *scan) containerSpec(c *ContainerSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			c.Name, ok = s.text()
		case "image":
			c.Image, ok = s.text()
		case "command":
			c.Command, ok = s.texts()
		case "ports":
			c.Ports, ok = s.texts()
		case "volumes":
			c.Volumes, ok = s.texts()
		case "restart":
			c.Restart, ok = s.text()
		case "env":
			c.Env = map[string]string{}
			ok = s.object(func(key []byte) bool {
				v, ok := s.text()
				c.Env[string(key)] = v
				return ok
			})
		}
		return ok
	})
}

func (s *scan) execSpec(e *ExecSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "argv":
			e.Argv, ok = s.texts()
		case "timeout":
			e.Timeout, ok = s.text()
		}
		return ok
	})
}
