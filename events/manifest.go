package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// Limits on a manifest, so hostile input is refused before it costs anything.
const (
	MaxManifestBytes = 768 << 10 // fits in one event on the stream
	MaxResources     = 5000
	MaxDepth         = 8 // JSON nesting: manifest > resources > resource > spec > env/argv > value
)

// Manifest is a device's desired state: the resources its agent keeps converged.
type Manifest struct {
	Resources []Resource `json:"resources"`
}

// MarshalJSON writes the canonical form: an empty manifest has an empty list.
func (m Manifest) MarshalJSON() ([]byte, error) {
	type plain Manifest
	if m.Resources == nil {
		m.Resources = []Resource{}
	}
	return json.Marshal(plain(m))
}

// Resource is one managed thing: an id and exactly one kind's spec.
//
// Decoding JSON into a Resource is lenient (the agent's view): a kind this
// build does not know keeps its name in Kind and its spec in Raw, and a
// resource with no or several kind keys gets Problem set, so the agent can
// fail that one resource and still converge the rest. The control plane
// decodes with ParseManifest, which is strict.
type Resource struct {
	ID          string           `json:"id"`
	DriftPolicy string           `json:"driftPolicy,omitempty"`
	Kind        string           `json:"-"`
	File        *FileSpec        `json:"file,omitempty"`
	SystemdUnit *SystemdUnitSpec `json:"systemdUnit,omitempty"`
	Container   *ContainerSpec   `json:"container,omitempty"`
	Exec        *ExecSpec        `json:"exec,omitempty"`
	Raw         json.RawMessage  `json:"-"` // spec of an unknown kind, as given
	Problem     string           `json:"-"` // why a leniently decoded resource cannot be used
}

// MarshalJSON writes the resource in its manifest form: id, driftPolicy and one kind key.
func (r Resource) MarshalJSON() ([]byte, error) {
	m := map[string]any{"id": r.ID}
	if r.DriftPolicy != "" {
		m["driftPolicy"] = r.DriftPolicy
	}
	if k, spec := r.specOf(); k != nil {
		m[k.Name] = spec
	} else if r.Kind != "" && len(r.Raw) > 0 {
		m[r.Kind] = r.Raw
	}
	return json.Marshal(m)
}

// UnmarshalJSON decodes leniently; see Resource.
func (r *Resource) UnmarshalJSON(b []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	*r = Resource{}
	if v, ok := fields["id"]; ok {
		if err := json.Unmarshal(v, &r.ID); err != nil {
			return fmt.Errorf("id: %w", err)
		}
	}
	if v, ok := fields["driftPolicy"]; ok {
		if err := json.Unmarshal(v, &r.DriftPolicy); err != nil {
			return fmt.Errorf("driftPolicy: %w", err)
		}
	}
	var kinds []string
	for k := range fields {
		if k != "id" && k != "driftPolicy" {
			kinds = append(kinds, k)
		}
	}
	sort.Strings(kinds)
	if len(kinds) != 1 {
		r.Problem = fmt.Sprintf("resource must have exactly one kind key (%s), has %d: %v", strings.Join(Kinds, ", "), len(kinds), kinds)
		return nil
	}
	r.Kind = kinds[0]
	spec := fields[r.Kind]
	k, ok := LookupKind(r.Kind)
	if !ok {
		r.Raw = append(json.RawMessage(nil), spec...)
		return nil
	}
	if err := json.Unmarshal(spec, k.field(r)); err != nil {
		r.Problem = fmt.Sprintf("%s spec: %v", r.Kind, err)
	}
	if k.spec(r) == nil && r.Problem == "" {
		r.Problem = fmt.Sprintf("%s spec: must be an object, not null", r.Kind)
	}
	return nil
}

// Known reports whether this build can reconcile the resource's kind.
func (r Resource) Known() bool {
	_, ok := LookupKind(r.Kind)
	return ok
}

// SpecDigest is the sha256 of the resource's canonical JSON: equal digests, equal specs.
func (r Resource) SpecDigest() string {
	b, _ := json.Marshal(r)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Digest is the sha256 of the manifest's canonical JSON; it is what a
// signature signs.
func (m Manifest) Digest() string {
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ParseManifest decodes a manifest from YAML or JSON as the control plane does:
// strictly. Unknown fields, a resource without exactly one known kind key,
// duplicate or malformed ids, relative or '..' paths, bad modes and timeouts
// are refused; the error names each field and its rule and wraps ErrInvalid.
func ParseManifest(b []byte) (Manifest, error) {
	var m Manifest
	if len(b) > MaxManifestBytes {
		return m, fmt.Errorf("%w: manifest is %d bytes: must be at most %d", ErrInvalid, len(b), MaxManifestBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return m, fmt.Errorf("%w: manifest is empty: it needs a resources list", ErrInvalid)
	}
	b, err := quoteUnquotedModes(b)
	if err != nil {
		return m, err
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return m, fmt.Errorf("%w: manifest is neither YAML nor JSON: %v", ErrInvalid, err)
	}
	if d := depth(js); d > MaxDepth {
		return m, fmt.Errorf("%w: manifest nests %d levels deep: must be at most %d", ErrInvalid, d, MaxDepth)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return m, fmt.Errorf("%w: manifest: must be an object with a resources list: %v", ErrInvalid, err)
	}
	for k := range top {
		if k != "resources" {
			return m, fmt.Errorf("%w: manifest field %q: unknown (allowed: resources)", ErrInvalid, k)
		}
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(top["resources"], &raws); err != nil || raws == nil {
		return m, fmt.Errorf("%w: manifest resources: must be a list", ErrInvalid)
	}
	if len(raws) > MaxResources {
		return m, fmt.Errorf("%w: manifest has %d resources: must be at most %d", ErrInvalid, len(raws), MaxResources)
	}
	var errs []error
	for i, raw := range raws {
		r, err := parseResourceStrict(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w: resources[%d]%s", ErrInvalid, i, err))
			continue
		}
		m.Resources = append(m.Resources, r)
	}
	if len(errs) > 0 {
		return Manifest{}, errors.Join(errs...)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func parseResourceStrict(raw json.RawMessage) (Resource, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return Resource{}, fmt.Errorf(": must be an object with an id and one kind key")
	}
	var kinds []string
	for k := range fields {
		switch k {
		case "id", "driftPolicy":
		default:
			if _, ok := LookupKind(k); ok {
				kinds = append(kinds, k)
				continue
			}
			return Resource{}, fmt.Errorf(".%s: unknown field (allowed: id, driftPolicy, and one of %s)", k, strings.Join(Kinds, ", "))
		}
	}
	sort.Strings(kinds)
	if len(kinds) != 1 {
		return Resource{}, fmt.Errorf(": must have exactly one kind key (%s), has %d %v", strings.Join(Kinds, ", "), len(kinds), kinds)
	}
	var r Resource
	if v, ok := fields["id"]; ok {
		if err := json.Unmarshal(v, &r.ID); err != nil {
			return r, fmt.Errorf(".id: must be a string")
		}
	}
	if v, ok := fields["driftPolicy"]; ok {
		if err := json.Unmarshal(v, &r.DriftPolicy); err != nil {
			return r, fmt.Errorf(".driftPolicy: must be a string")
		}
	}
	r.Kind = kinds[0]
	k, _ := LookupKind(r.Kind)
	if k.TakesHealth() {
		if err := strictHealth(r.Kind, fields[r.Kind]); err != nil {
			return r, err
		}
	}
	target := k.alloc(&r)
	dec := json.NewDecoder(bytes.NewReader(fields[r.Kind]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return r, fmt.Errorf(".%s: %v", r.Kind, strings.TrimPrefix(err.Error(), "json: "))
	}
	if bytes.Equal(bytes.TrimSpace(fields[r.Kind]), []byte("null")) {
		return r, fmt.Errorf(".%s: must be an object, not null", r.Kind)
	}
	return r, nil
}

// The name rules. Length limits are checked apart from the patterns: a
// bounded repetition such as {0,254} compiles into a program with one
// state per repetition, which cost every binary that links events 640 kB
// and 2 ms at start-up.
var (
	modePattern     = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	userPattern     = bounded(`^([a-z_][a-z0-9_-]*|[0-9]{1,10})$`, 32)
	unitPattern     = regexp.MustCompile(`^[A-Za-z0-9@_.:\\-]+\.(service|socket|timer|path|mount|target)$`)
	imagePattern    = bounded(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`, 255)
	portPattern     = regexp.MustCompile(`^([0-9.]+:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$`)
	envKeyPattern   = bounded(`^[A-Za-z_][A-Za-z0-9_]*$`, 128)
	containerName   = bounded(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`, 128)
	restartPolicies = map[string]bool{"": true, "no": true, "always": true, "on-failure": true, "unless-stopped": true}
)

// boundedPattern is a pattern with a maximum length in bytes.
type boundedPattern struct {
	re  *regexp.Regexp
	max int
}

func bounded(expr string, max int) boundedPattern {
	return boundedPattern{regexp.MustCompile(expr), max}
}

func (p boundedPattern) MatchString(s string) bool { return len(s) <= p.max && p.re.MatchString(s) }

// Validate checks every rule of a manifest that the JSON shape cannot: ids,
// uniqueness, paths, modes, names, timeouts. All problems are reported, each
// naming its field; the error wraps ErrInvalid.
func (m Manifest) Validate() error {
	if len(m.Resources) > MaxResources {
		return fmt.Errorf("%w: manifest has %d resources: must be at most %d", ErrInvalid, len(m.Resources), MaxResources)
	}
	c := &specCheck{paths: map[string]int{}}
	seen := map[string]int{}
	for i := range m.Resources {
		r := &m.Resources[i]
		c.i = i
		if !ValidID(r.ID) {
			c.bad("id", "%q must be %s", r.ID, IDRule)
		} else if j, dup := seen[r.ID]; dup {
			c.bad("id", "%q is also the id of resources[%d]: ids must be unique", r.ID, j)
		} else {
			seen[r.ID] = i
		}
		if r.DriftPolicy != "" && r.DriftPolicy != DriftCorrect && r.DriftPolicy != DriftReport {
			c.bad("driftPolicy", "%q must be %s or %s", r.DriftPolicy, DriftCorrect, DriftReport)
		}
		if r.Problem != "" {
			c.errs = append(c.errs, fmt.Errorf("%w: resources[%d]: %s", ErrInvalid, i, r.Problem))
			continue
		}
		if k, _ := r.specOf(); k != nil {
			k.validate(r, c)
		} else {
			c.bad(r.Kind, "unknown kind: must be one of %s", strings.Join(Kinds, ", "))
		}
	}
	return errors.Join(c.errs...)
}

// checkPath returns why p is not an acceptable absolute path, or "".
func checkPath(p string) string {
	switch {
	case p == "":
		return "must be set"
	case !strings.HasPrefix(p, "/"):
		return "must be absolute"
	case strings.ContainsRune(p, 0):
		return "must not contain a NUL byte"
	case len(p) > 4096:
		return "must be at most 4096 bytes"
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "must not contain '..'"
		}
	}
	if path.Clean(p) == "/" {
		return "must name a file, not /"
	}
	return ""
}

// depth returns how deeply a JSON document nests objects and arrays.
func depth(js []byte) int {
	max, cur := 0, 0
	inString, escaped := false, false
	for _, c := range js {
		switch {
		case inString:
			if escaped {
				escaped = false
			} else if c == '\\' {
				escaped = true
			} else if c == '"' {
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			cur++
			if cur > max {
				max = cur
			}
		case c == '}' || c == ']':
			cur--
		}
	}
	return max
}
