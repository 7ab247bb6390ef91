package events

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalid is wrapped by every error that rejects input (a bad id, a bad
// manifest, a malformed event). Commands map it to exit code 2.
var ErrInvalid = errors.New("invalid")

// IDRule is the rule every device and resource id follows, quoted in errors.
const IDRule = "1 to 64 characters of A-Z, a-z, 0-9, '_' or '-' (one subject token)"

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s can be a device or resource id: exactly one NATS
// subject token, so no '.', '*', '>' or white space can reach a subject.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// CheckID returns nil for a valid id, else an error naming the field and the rule.
func CheckID(field, s string) error {
	if ValidID(s) {
		return nil
	}
	return fmt.Errorf("%w: %s %q: must be %s", ErrInvalid, field, s, IDRule)
}
