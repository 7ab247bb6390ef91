package projections

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/fleet-dev/fleet/events"
)

// SelectorRule is the grammar of a label selector, quoted in errors: the
// Kubernetes label selector syntax, parsed by Kubernetes' own parser
// (k8s.io/apimachinery/pkg/labels).
const SelectorRule = "comma-separated requirements, each key=value, key==value, key!=value, " +
	"key in (v1,v2), key notin (v1,v2), key (has the label) or !key (has not); " +
	"keys and values as Kubernetes labels (values up to 63 characters of A-Z, a-z, 0-9, '-', '_', '.')"

// MaxSelector bounds a selector's length.
const MaxSelector = 1024

// Selector selects devices by their (merged) labels. The zero Selector,
// and the one parsed from "", select every device.
type Selector struct {
	text string
	sel  labels.Selector
}

// ParseSelector parses s (see SelectorRule). A bad selector is an error
// wrapping events.ErrInvalid that quotes the selector, says what is wrong
// and gives the rule.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelector {
		return Selector{}, fmt.Errorf("%w: selector: at most %d characters, got %d", events.ErrInvalid, MaxSelector, len(s))
	}
	if strings.TrimSpace(s) == "" {
		return Selector{}, nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return Selector{}, fmt.Errorf("%w: selector %q: %v; must be %s", events.ErrInvalid, s, err, SelectorRule)
	}
	return Selector{text: s, sel: sel}, nil
}

// Empty reports whether the selector selects every device.
func (s Selector) Empty() bool { return s.sel == nil || s.sel.Empty() }

// Matches reports whether a device with these labels is selected.
func (s Selector) Matches(l map[string]string) bool {
	if s.sel == nil {
		return true
	}
	return s.sel.Matches(labels.Set(l))
}

// String returns the selector as given ("" for every device).
func (s Selector) String() string { return s.text }
