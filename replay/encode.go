package replay

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// AppendStored appends the JSON of a stored event (the -o ndjson line of
// `fleet replay`, without the newline) to b. It writes what encoding/json
// writes for events.Stored with HTML escaping off, field for field, but
// copies the payload as stored instead of re-encoding it: printing the log
// costs one decode per event, not a decode and an encode.
func AppendStored(b []byte, s events.Stored) []byte {
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
	b = append(b, `,"data":`...)
	b = appendRaw(b, s.Data)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, s.Seq, 10)
	b = append(b, `,"streamTime":`...)
	b = appendTime(b, s.StreamTime)
	b = append(b, `,"subject":`...)
	b = appendString(b, s.Subject)
	return append(b, '}')
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
