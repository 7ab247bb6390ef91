package events

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"

	yaml3 "go.yaml.in/yaml/v3"
)

// quoteUnquotedModes rewrites every unquoted number given as a file's mode
// in octal form into the string the user wrote. YAML reads `mode: 0644` as
// the integer 420 (YAML 1.1) or 644 (YAML 1.2), neither of which is what was
// meant; the octal digits as written are: 0644 and 0o644 become "0644",
// 04755 becomes "4755". A number without the leading 0 (644, 420, 4755) is
// refused, naming the field and saying to quote it: 420 is 0644 in decimal
// (as Kubernetes writes it) as much as it is chmod 420, so fleet does not
// guess; and so is a number that is no octal mode (0648, 0x1a4, 1e3). Only
// the number's own bytes change, so everything else is read exactly as
// before; a document this parser cannot read is left alone for the strict
// parse to refuse.
func quoteUnquotedModes(b []byte) ([]byte, error) {
	if !bytes.Contains(b, []byte("mode")) {
		return b, nil
	}
	var doc yaml3.Node
	if err := yaml3.Unmarshal(b, &doc); err != nil || len(doc.Content) == 0 {
		return b, nil
	}
	var fixes []*yaml3.Node
	var errs []string
	top := doc.Content[0]
	res := mapValue(top, "resources")
	if res == nil || res.Kind != yaml3.SequenceNode {
		return b, nil
	}
	for i, r := range res.Content {
		f := mapValue(r, KindFile)
		mode := mapValue(f, "mode")
		if mode == nil || mode.Kind != yaml3.ScalarNode || mode.Style&(yaml3.SingleQuotedStyle|yaml3.DoubleQuotedStyle|yaml3.LiteralStyle|yaml3.FoldedStyle) != 0 {
			continue
		}
		if t := mode.ShortTag(); t != "!!int" && t != "!!float" {
			continue
		}
		if _, ok := octalAsWritten(mode.Value); !ok {
			errs = append(errs, fmt.Sprintf("resources[%d].file.mode: %s written unquoted is read by YAML as a number, not an octal mode: quote it, as in mode: \"0644\" (a mode is a string of octal digits)", i, mode.Value))
			continue
		}
		fixes = append(fixes, mode)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "; "))
	}
	out := b
	for j := len(fixes) - 1; j >= 0; j-- { // from the end, so earlier offsets stay valid
		n := fixes[j]
		off, ok := offsetOf(out, n.Line, n.Column)
		if !ok || !bytes.HasPrefix(out[off:], []byte(n.Value)) {
			return b, nil // positions not as expected: leave it to the strict parse
		}
		m, _ := octalAsWritten(n.Value)
		out = append(append(append([]byte(nil), out[:off]...), '"'), append([]byte(m+`"`), out[off+len(n.Value):]...)...)
	}
	return out, nil
}

// octalAsWritten returns the mode that a number written in octal form
// means: a leading 0 or 0o/0O, then 3 or 4 octal digits in all ("0644",
// "04755", "0o644"); false for anything else.
func octalAsWritten(v string) (string, bool) {
	var d string
	switch {
	case strings.HasPrefix(v, "0o"), strings.HasPrefix(v, "0O"):
		d = v[2:]
	case strings.HasPrefix(v, "0") && len(v) > 1:
		d = v[1:]
		if len(d) == 4 && d[0] == '0' { // 00644
			d = d[1:]
		}
	default:
		return "", false
	}
	if len(d) < 3 || len(d) > 4 || strings.Trim(d, "01234567") != "" {
		return "", false
	}
	if len(d) == 3 {
		d = "0" + d
	}
	return d, true
}

// mapValue is the value of key in mapping node n, or nil.
func mapValue(n *yaml3.Node, key string) *yaml3.Node {
	if n == nil || n.Kind != yaml3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// offsetOf turns a 1-based line and column (in characters) into a byte offset.
func offsetOf(b []byte, line, col int) (int, bool) {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return 0, false
		}
		off += i + 1
	}
	for c := 1; c < col; c++ {
		if off >= len(b) || b[off] == '\n' {
			return 0, false
		}
		_, size := utf8.DecodeRune(b[off:])
		off += size
	}
	return off, off <= len(b)
}
