package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// The JSON form of a Stored event: the envelope with the stream's seq,
// streamTime and subject beside it (the -o ndjson line of `fleet replay`).
// AppendStoredJSON writes it, DecodeStoredJSON reads it back;
// AppendEventJSON writes the envelope alone (the export line).

// AppendStoredJSON appends the JSON of a stored event (without a newline)
// to b. It writes what encoding/json writes for Stored with HTML escaping
// off, field for field, but copies the payload as stored instead of
// re-encoding it: printing the log costs one decode per event, not a
// decode and an encode.
func AppendStoredJSON(b []byte, s Stored) []byte {
	b = appendEnvelope(b, s.Event)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, s.Seq, 10)
	b = append(b, `,"streamTime":`...)
	b = appendTime(b, s.StreamTime)
	b = append(b, `,"subject":`...)
	b = appendString(b, s.Subject)
	return append(b, '}')
}

// AppendEventJSON appends the JSON of e, the envelope as stored (without
// a newline), to b: what encoding/json writes for Event with HTML escaping
// off, the payload copied as it is (compacted if it is not compact). Like
// AppendStoredJSON it does not check e.
func AppendEventJSON(b []byte, e Event) []byte {
	return append(appendEnvelope(b, e), '}')
}

// appendEnvelope appends e's JSON object without its closing brace.
func appendEnvelope(b []byte, s Event) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, s.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, s.Type)
	b = append(b, `,"schema":`...)
	b = strconv.AppendInt(b, int64(s.Schema), 10)
	b = append(b, `,"device":`...)
	b = appendString(b, s.Device)
	if s.Resource != "" {
		b = append(b, `,"resource":`...)
		b = appendString(b, s.Resource)
	}
	b = append(b, `,"generation":`...)
	b = strconv.AppendInt(b, s.Generation, 10)
	b = append(b, `,"at":`...)
	b = appendTime(b, s.At)
	b = append(b, `,"actor":`...)
	b = appendString(b, s.Actor)
	if s.Causation != "" {
		b = append(b, `,"causation":`...)
		b = appendString(b, s.Causation)
	}
	if s.Correlation != "" {
		b = append(b, `,"correlation":`...)
		b = appendString(b, s.Correlation)
	}
	if s.Writer != "" {
		b = append(b, `,"writer":`...)
		b = appendString(b, s.Writer)
	}
	if s.WriterSeq != 0 {
		b = append(b, `,"wseq":`...)
		b = strconv.AppendUint(b, s.WriterSeq, 10)
	}
	b = append(b, `,"data":`...)
	return appendRaw(b, s.Data)
}

// DecodeStoredJSON reads what AppendStoredJSON writes: the event, checked
// as Decode checks it, with Seq, StreamTime and Subject from beside it. A
// line without seq is not a stored event's (an export line is a bare
// Event: Decode it). Errors name what is wrong; a bad event wraps
// ErrInvalid as Decode's do.
func DecodeStoredJSON(b []byte) (Stored, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return Stored{}, fmt.Errorf("%w: stored event: %v", ErrInvalid, err)
	}
	if _, ok := fields["seq"]; !ok {
		return Stored{}, fmt.Errorf("%w: stored event: no seq (an export line is a bare event)", ErrInvalid)
	}
	var beside struct {
		Seq        uint64    `json:"seq"`
		StreamTime time.Time `json:"streamTime"`
		Subject    string    `json:"subject"`
	}
	if err := json.Unmarshal(b, &beside); err != nil {
		return Stored{}, fmt.Errorf("%w: stored event: %v", ErrInvalid, err)
	}
	delete(fields, "seq")
	delete(fields, "streamTime")
	delete(fields, "subject")
	eb, err := json.Marshal(fields)
	if err != nil {
		return Stored{}, fmt.Errorf("%w: stored event: %v", ErrInvalid, err)
	}
	s, err := DecodeStored(eb)
	if err != nil {
		return Stored{}, err
	}
	s.Seq, s.StreamTime, s.Subject = beside.Seq, beside.StreamTime, beside.Subject
	return s, nil
}

func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendString quotes plain ASCII directly and leaves anything else to encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(s)
			return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRaw copies a payload that is already compact JSON, and compacts
// any other (a foreign writer's whitespace must not break a line).
func appendRaw(b []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	compact := true
	inString := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case ' ', '\t', '\n', '\r':
			compact = false
		}
		if !compact {
			break
		}
	}
	if compact {
		return append(b, raw...)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return append(b, "null"...)
	}
	return append(b, buf.Bytes()...)
}
