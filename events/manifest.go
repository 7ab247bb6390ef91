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
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Resource kinds, the kind key of a manifest resource.
const (
	KindFile        = "file"
	KindSystemdUnit = "systemdUnit"
	KindContainer   = "container"
	KindExec        = "exec"
)

// Kinds lists the resource kinds this build knows.
var Kinds = []string{KindFile, KindSystemdUnit, KindContainer, KindExec}

// Limits on a manifest, so hostile input is refused before it costs anything.
const (
	MaxManifestBytes = 768 << 10 // fits in one event on the stream
	MaxResources     = 5000
	MaxDepth         = 8 // JSON nesting: manifest > resources > resource > spec > env/argv > value
	MaxExecTimeout   = time.Hour
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

// FileSpec is a file with inline content. Path is absolute; the agent roots it
// under its --root.
type FileSpec struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Mode    string `json:"mode,omitempty"` // octal, default 0644
	Owner   string `json:"owner,omitempty"`
	Group   string `json:"group,omitempty"`
}

// SystemdUnitSpec is a unit file with its wanted enablement and activity.
type SystemdUnitSpec struct {
	Name    string `json:"name"`
	Content string `json:"content"`
	Enabled *bool  `json:"enabled,omitempty"` // default true
	Active  *bool  `json:"active,omitempty"`  // default true
}

// ContainerSpec is a podman container.
type ContainerSpec struct {
	Name    string            `json:"name,omitempty"` // default fleet-<resource id>
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Ports   []string          `json:"ports,omitempty"`   // host:container[/proto]
	Volumes []string          `json:"volumes,omitempty"` // /host:/container[:ro]
	Restart string            `json:"restart,omitempty"` // no, always, on-failure, unless-stopped
}

// ExecSpec is the escape hatch: an argv run once per generation, only on an
// agent started with --allow-exec.
type ExecSpec struct {
	Argv    []string `json:"argv"`
	Timeout string   `json:"timeout,omitempty"` // Go duration, default 5m
}

// TimeoutOrDefault returns the parsed timeout (validated by ParseManifest).
func (e ExecSpec) TimeoutOrDefault() time.Duration {
	if d, err := time.ParseDuration(e.Timeout); err == nil && d > 0 {
		return d
	}
	return 5 * time.Minute
}

// ModeOrDefault returns the file mode (validated by ParseManifest), 0644 if unset.
func (f FileSpec) ModeOrDefault() uint32 {
	if m, err := strconv.ParseUint(f.Mode, 8, 32); err == nil && f.Mode != "" {
		return uint32(m)
	}
	return 0o644
}

// ContainerName returns the podman name of a container resource.
func (r Resource) ContainerName() string {
	if r.Container != nil && r.Container.Name != "" {
		return r.Container.Name
	}
	return "fleet-" + r.ID
}

// Boolean defaults of a unit.
func (u SystemdUnitSpec) WantEnabled() bool { return u.Enabled == nil || *u.Enabled }
func (u SystemdUnitSpec) WantActive() bool  { return u.Active == nil || *u.Active }

// MarshalJSON writes the resource in its manifest form: id, driftPolicy and one kind key.
func (r Resource) MarshalJSON() ([]byte, error) {
	m := map[string]any{"id": r.ID}
	if r.DriftPolicy != "" {
		m["driftPolicy"] = r.DriftPolicy
	}
	switch {
	case r.File != nil:
		m[KindFile] = r.File
	case r.SystemdUnit != nil:
		m[KindSystemdUnit] = r.SystemdUnit
	case r.Container != nil:
		m[KindContainer] = r.Container
	case r.Exec != nil:
		m[KindExec] = r.Exec
	case r.Kind != "" && len(r.Raw) > 0:
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
	var err error
	switch r.Kind {
	case KindFile:
		err = json.Unmarshal(spec, &r.File)
	case KindSystemdUnit:
		err = json.Unmarshal(spec, &r.SystemdUnit)
	case KindContainer:
		err = json.Unmarshal(spec, &r.Container)
	case KindExec:
		err = json.Unmarshal(spec, &r.Exec)
	default:
		r.Raw = append(json.RawMessage(nil), spec...)
		return nil
	}
	if err != nil {
		r.Problem = fmt.Sprintf("%s spec: %v", r.Kind, err)
	}
	if r.File == nil && r.SystemdUnit == nil && r.Container == nil && r.Exec == nil && r.Problem == "" {
		r.Problem = fmt.Sprintf("%s spec: must be an object, not null", r.Kind)
	}
	return nil
}

// Known reports whether this build can reconcile the resource's kind.
func (r Resource) Known() bool {
	switch r.Kind {
	case KindFile, KindSystemdUnit, KindContainer, KindExec:
		return true
	}
	return false
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
		case KindFile, KindSystemdUnit, KindContainer, KindExec:
			kinds = append(kinds, k)
		default:
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
	var target any
	switch r.Kind {
	case KindFile:
		r.File = new(FileSpec)
		target = r.File
	case KindSystemdUnit:
		r.SystemdUnit = new(SystemdUnitSpec)
		target = r.SystemdUnit
	case KindContainer:
		r.Container = new(ContainerSpec)
		target = r.Container
	case KindExec:
		r.Exec = new(ExecSpec)
		target = r.Exec
	}
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
	var errs []error
	bad := func(i int, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: resources[%d].%s: %s", ErrInvalid, i, field, fmt.Sprintf(format, args...)))
	}
	if len(m.Resources) > MaxResources {
		return fmt.Errorf("%w: manifest has %d resources: must be at most %d", ErrInvalid, len(m.Resources), MaxResources)
	}
	seen := map[string]int{}
	paths := map[string]int{}
	for i, r := range m.Resources {
		if !ValidID(r.ID) {
			bad(i, "id", "%q must be %s", r.ID, IDRule)
		} else if j, dup := seen[r.ID]; dup {
			bad(i, "id", "%q is also the id of resources[%d]: ids must be unique", r.ID, j)
		} else {
			seen[r.ID] = i
		}
		if r.DriftPolicy != "" && r.DriftPolicy != DriftCorrect && r.DriftPolicy != DriftReport {
			bad(i, "driftPolicy", "%q must be %s or %s", r.DriftPolicy, DriftCorrect, DriftReport)
		}
		if r.Problem != "" {
			errs = append(errs, fmt.Errorf("%w: resources[%d]: %s", ErrInvalid, i, r.Problem))
			continue
		}
		switch {
		case r.File != nil:
			f := r.File
			if msg := checkPath(f.Path); msg != "" {
				bad(i, "file.path", "%q %s", f.Path, msg)
			} else if j, dup := paths[path.Clean(f.Path)]; dup {
				bad(i, "file.path", "%q is also the path of resources[%d]: one resource per file", f.Path, j)
			} else {
				paths[path.Clean(f.Path)] = i
			}
			if f.Mode != "" && !modePattern.MatchString(f.Mode) {
				bad(i, "file.mode", "%q must be an octal mode from 0000 to 7777, such as \"0644\"", f.Mode)
			}
			if f.Owner != "" && !userPattern.MatchString(f.Owner) {
				bad(i, "file.owner", "%q must be a user name or a numeric uid", f.Owner)
			}
			if f.Group != "" && !userPattern.MatchString(f.Group) {
				bad(i, "file.group", "%q must be a group name or a numeric gid", f.Group)
			}
		case r.SystemdUnit != nil:
			u := r.SystemdUnit
			if !unitPattern.MatchString(u.Name) || strings.LastIndexByte(u.Name, '.') > 200 {
				bad(i, "systemdUnit.name", "%q must be a unit file name such as nginx.service (no '/')", u.Name)
			}
			if u.Content == "" {
				bad(i, "systemdUnit.content", "must not be empty")
			}
		case r.Container != nil:
			c := r.Container
			if !imagePattern.MatchString(c.Image) {
				bad(i, "container.image", "%q must be an image reference such as nginx:1.27", c.Image)
			}
			if c.Name != "" && !containerName.MatchString(c.Name) {
				bad(i, "container.name", "%q must be letters, digits, '_', '.', '-'", c.Name)
			}
			if !restartPolicies[c.Restart] {
				bad(i, "container.restart", "%q must be no, always, on-failure or unless-stopped", c.Restart)
			}
			for k := range c.Env {
				if !envKeyPattern.MatchString(k) {
					bad(i, "container.env", "key %q must be a shell variable name", k)
				}
			}
			for j, p := range c.Ports {
				if !portPattern.MatchString(p) {
					bad(i, fmt.Sprintf("container.ports[%d]", j), "%q must be host:container[/tcp|udp]", p)
				}
			}
			for j, v := range c.Volumes {
				parts := strings.Split(v, ":")
				if len(parts) < 2 || len(parts) > 3 || checkPath(parts[0]) != "" || checkPath(parts[1]) != "" {
					bad(i, fmt.Sprintf("container.volumes[%d]", j), "%q must be /host/path:/container/path[:ro]", v)
				}
			}
		case r.Exec != nil:
			e := r.Exec
			if len(e.Argv) == 0 || e.Argv[0] == "" {
				bad(i, "exec.argv", "must name a program and its arguments (a list, never a shell string)")
			}
			for j, a := range e.Argv {
				if strings.ContainsRune(a, 0) {
					bad(i, fmt.Sprintf("exec.argv[%d]", j), "must not contain a NUL byte")
				}
			}
			if e.Timeout != "" {
				d, err := time.ParseDuration(e.Timeout)
				if err != nil || d <= 0 || d > MaxExecTimeout {
					bad(i, "exec.timeout", "%q must be a duration from 1ms to %s, such as 30s", e.Timeout, MaxExecTimeout)
				}
			}
		default:
			bad(i, r.Kind, "unknown kind: must be one of %s", strings.Join(Kinds, ", "))
		}
	}
	return errors.Join(errs...)
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
