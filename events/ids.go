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
func ValidID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
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
	if ok && (kind == "user" || kind == "agent") && validActorName(name) {
		return nil
	}
	return fmt.Errorf("%w: actor %q: must be %s", ErrInvalid, s, ActorRule)
}

func validActorName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.', c == '@':
		default:
			return false
		}
	}
	return true
}
