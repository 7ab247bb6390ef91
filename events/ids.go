package events

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is wrapped by every error that rejects input (a bad id, a bad
// manifest, a malformed event). Commands map it to exit code 2.
var ErrInvalid = errors.New("invalid")

// IDRule is the rule every device and resource id follows, quoted in errors.
const IDRule = "1 to 64 characters of A-Z, a-z, 0-9, '_' or '-' (one subject token)"

// ValidID reports whether s can be a device or resource id: exactly one NATS
// subject token, so no '.', '*', '>' or white space can reach a subject.
// (A loop rather than a regexp: every event read is checked with it.)
func ValidID(s string) bool { return validName(s, false) }

// validName: 1 to 64 of A-Z, a-z, 0-9, '_', '-', and with dotAt also '.'
// and '@'.
func validName(s string, dotAt bool) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i], dotAt) {
			return false
		}
	}
	return true
}

func nameChar(c byte, dotAt bool) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' ||
		dotAt && (c == '.' || c == '@')
}

// ActorName makes a name follow ActorRule's NAME: every character the rule
// does not allow becomes '_', and it is cut to 64 bytes ("unknown" if empty).
func ActorName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !nameChar(c, true) {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}

// CheckID returns nil for a valid id, else an error naming the field and the rule.
func CheckID(field, s string) error {
	if ValidID(s) {
		return nil
	}
	return fmt.Errorf("%w: %s %q: must be %s", ErrInvalid, field, s, IDRule)
}

// ActorRule is the rule every event's actor follows, quoted in errors.
const ActorRule = "user:NAME or agent:DEVICE, NAME 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'"

// CheckActor returns nil for a valid actor (who caused an event: a person,
// user:NAME, or a device's agent, agent:DEVICE), else an error naming the
// rule. Events are only created with a valid actor (New checks it).
func CheckActor(s string) error {
	kind, name, ok := strings.Cut(s, ":")
	if ok && (kind == "user" || kind == "agent") && validName(name, true) {
		return nil
	}
	return fmt.Errorf("%w: actor %q: must be %s", ErrInvalid, s, ActorRule)
}
