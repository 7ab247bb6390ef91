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

// The scanner under fastDecode: JSON tokens in fleet's grammar subset, the
// constant words and the shared-string cache (see fastdecode.go).

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
