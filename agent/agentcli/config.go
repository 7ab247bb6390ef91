package agentcli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/fleet-dev/fleet/events"
)

// ConfigEnv names the environment variable that names the agent's config
// file when --config is not given.
const ConfigEnv = "FLEET_AGENT_CONFIG"

// Kind is how a config key's value is typed: as its flag.
type Kind int

// The kinds of config values.
const (
	KindString Kind = iota
	KindBool
	KindInt
	KindDuration
	KindList // a YAML list of strings, as a repeatable flag
	KindMap  // a YAML map of string to scalar, as --label K=V
)

func (k Kind) rule() string {
	return [...]string{"a string", "true or false", "a whole number", `a duration such as "30s" or "5m"`,
		"a list of strings", "a map of KEY: VALUE"}[k]
}

// notSettings are flags a config file may not set: they choose what one run
// does, not how the agent is set up.
var notSettings = map[string]string{
	"config":     "a config file cannot name another",
	"version":    "give --version on the command line",
	"help":       "give --help on the command line",
	"deregister": "a one-off action: give --deregister on the command line",
	"parked":     "a one-off action: give --parked on the command line",
}

// ConfigKeys is every key an agent config file may have, with its kind: the
// connection flags (nats, creds, tls-ca) and the agent command's, named as
// the flags are.
func ConfigKeys() map[string]Kind {
	keys := map[string]Kind{"nats": KindString, "creds": KindString, "tls-ca": KindString}
	rt := reflect.TypeOf(Cmd{})
	for i := 0; i < rt.NumField(); i++ {
		f := rt.Field(i)
		name := f.Tag.Get("name")
		if name == "" {
			name = Kebab(f.Name)
		}
		if _, no := notSettings[name]; no {
			continue
		}
		switch {
		case f.Type == reflect.TypeOf(time.Duration(0)):
			keys[name] = KindDuration
		case f.Type.Kind() == reflect.Bool:
			keys[name] = KindBool
		case f.Type.Kind() == reflect.Int:
			keys[name] = KindInt
		case f.Type.Kind() == reflect.Slice:
			keys[name] = KindList
		case f.Type.Kind() == reflect.Map:
			keys[name] = KindMap
		default:
			keys[name] = KindString
		}
	}
	return keys
}

// Config is an agent config file, read and checked: each key's values as
// the command line would give them (a list: one value per element; the
// label map: one K=V per entry, sorted; anything else: one value).
type Config struct {
	Path   string
	Values map[string][]string
	kinds  map[string]Kind
}

// LoadConfig reads the YAML config file at path, strictly: an unknown key,
// a key that is not a setting, or a value not typed as its flag is refused
// with an error (wrapping events.ErrInvalid) that names the file and the
// key. An empty path is no config file: an empty Config.
func LoadConfig(path string) (*Config, error) {
	c := &Config{Path: path, Values: map[string][]string{}, kinds: ConfigKeys()}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		hint := ""
		switch {
		case os.IsNotExist(err):
			hint = " (give an existing file to --config or $" + ConfigEnv + "; deploy/systemd/agent.yaml is a sample)"
		case os.IsPermission(err):
			hint = " (the agent cannot read it: run it as root, or make the file readable by its user)"
		}
		return nil, fmt.Errorf("%w: config file %s: %v%s", events.ErrInvalid, path, err, hint)
	}
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: config file %s: not YAML: %v", events.ErrInvalid, path, err)
	}
	var raw map[string]any
	if len(bytes.TrimSpace(js)) > 0 && string(bytes.TrimSpace(js)) != "null" {
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.UseNumber()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: config file %s: must be a map of setting: value (the flags' names without --): %v", events.ErrInvalid, path, err)
		}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		vals, err := c.convert(k, raw[k])
		if err != nil {
			return nil, fmt.Errorf("%w: config file %s: %s", events.ErrInvalid, path, err)
		}
		c.Values[k] = vals
	}
	return c, nil
}

func (c *Config) convert(key string, v any) ([]string, error) {
	if why, no := notSettings[key]; no {
		return nil, fmt.Errorf("key %q is not a setting: %s", key, why)
	}
	kind, ok := c.kinds[key]
	if !ok {
		names := make([]string, 0, len(c.kinds))
		for k := range c.kinds {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("unknown key %q (the keys are the flags' names: %s)", key, strings.Join(names, ", "))
	}
	bad := func() error {
		return fmt.Errorf("key %q: must be %s, got %s", key, kind.rule(), show(v))
	}
	switch kind {
	case KindString:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		return []string{s}, nil
	case KindBool:
		b, ok := v.(bool)
		if !ok {
			return nil, bad()
		}
		return []string{strconv.FormatBool(b)}, nil
	case KindInt:
		n, ok := v.(json.Number)
		if !ok {
			return nil, bad()
		}
		i, err := n.Int64()
		if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
			return nil, bad()
		}
		return []string{n.String()}, nil
	case KindDuration:
		s, ok := v.(string)
		if !ok {
			return nil, bad()
		}
		if _, err := time.ParseDuration(s); err != nil {
			return nil, bad()
		}
		return []string{s}, nil
	case KindList:
		l, ok := v.([]any)
		if !ok {
			return nil, bad()
		}
		out := make([]string, 0, len(l))
		for i, e := range l {
			s, ok := e.(string)
			if !ok || s == "" || strings.Contains(s, ",") {
				return nil, fmt.Errorf("key %q: element %d: must be a non-empty string without a comma, got %s", key, i, show(e))
			}
			out = append(out, s)
		}
		return out, nil
	case KindMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, bad()
		}
		out := make([]string, 0, len(m))
		for k, e := range m {
			var s string
			switch e := e.(type) {
			case string:
				s = e
			case json.Number:
				s = e.String()
			case bool:
				s = strconv.FormatBool(e)
			default:
				return nil, fmt.Errorf("key %q: %q: must be a string, number or bool, got %s", key, k, show(e))
			}
			out = append(out, k+"="+s)
		}
		sort.Strings(out)
		return out, nil
	}
	return nil, bad()
}

func show(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a map"
	}
	return fmt.Sprintf("%v", v)
}

// Lookup returns the values the file gives the flag named name, if any.
func (c *Config) Lookup(name string) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	v, ok := c.Values[name]
	return v, ok
}

// Typed returns the file's value for the flag named name the way a kong
// resolver hands it on: a []any for a list, a map[string]any for the label
// map, a string otherwise; nil when the file does not set it.
func (c *Config) Typed(name string) any {
	v, ok := c.Lookup(name)
	if !ok {
		return nil
	}
	switch c.kinds[name] {
	case KindList:
		l := make([]any, len(v))
		for i, s := range v {
			l[i] = s
		}
		return l
	case KindMap:
		m := make(map[string]any, len(v))
		for _, kv := range v {
			k, val, _ := strings.Cut(kv, "=")
			m[k] = val
		}
		return m
	}
	return v[0]
}

// Kebab turns a Go field name into a flag name as kong does (DriftInterval:
// drift-interval).
func Kebab(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if r >= 'A' && r <= 'Z' {
			if i > 0 && (isLower(rs[i-1]) || i+1 < len(rs) && isLower(rs[i+1])) {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func isLower(r rune) bool { return r >= 'a' && r <= 'z' }
