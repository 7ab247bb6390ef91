package main

// fleet-agent parses its flags with this small parser, driven by the same
// kong struct tags as `fleet agent` (agentcli.Cmd), instead of linking kong:
// kong looks methods up by name at run time (reflect MethodByName), which
// makes the linker keep every exported method of every type in the binary.
// Without it the static, stripped binary is about 4.9 MB smaller (21.4 MB ->
// 16.5 MB), and so is what the idle agent maps of it (RSS 20.5 -> 17.0 MB).
// TestFlagsParseAsKong checks that both parse the same arguments alike.

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/fleet-dev/fleet/agent/agentcli"
)

// flagSpec is one flag, from a struct field and its tags.
type flagSpec struct {
	name, short, env, def, placeholder, help string
	required, hasDefault                     bool
	enum                                     []string
	mapSep                                   string // "" when not a map; "none": one K=V per flag
	field                                    reflect.Value
}

var errHelp = errors.New("help requested")

// flagSpecs lists the flags of the struct *v points to, embedded structs
// flattened in place, in declaration order.
func flagSpecs(v any) []*flagSpec {
	var specs []*flagSpec
	var walk func(rv reflect.Value)
	walk = func(rv reflect.Value) {
		rt := rv.Type()
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() {
				continue
			}
			if f.Anonymous && f.Type.Kind() == reflect.Struct {
				walk(rv.Field(i))
				continue
			}
			s := &flagSpec{
				name: f.Tag.Get("name"), short: f.Tag.Get("short"), env: f.Tag.Get("env"),
				placeholder: f.Tag.Get("placeholder"), help: f.Tag.Get("help"), field: rv.Field(i),
			}
			if s.name == "" {
				s.name = kebab(f.Name)
			}
			s.def, s.hasDefault = f.Tag.Lookup("default")
			_, s.required = f.Tag.Lookup("required")
			if e := f.Tag.Get("enum"); e != "" {
				s.enum = strings.Split(e, ",")
			}
			if f.Type.Kind() == reflect.Map {
				s.mapSep = f.Tag.Get("mapsep")
				if s.mapSep == "" {
					s.mapSep = ";"
				}
			}
			specs = append(specs, s)
		}
	}
	walk(reflect.ValueOf(v).Elem())
	return specs
}

// kebab turns a Go field name into a flag name as kong does (DriftInterval:
// drift-interval).
func kebab(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || i+1 < len(rs) && unicode.IsLower(rs[i+1])) {
				b.WriteByte('-')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *flagSpec) isBool() bool { return s.field.Kind() == reflect.Bool }

// display is the flag as usage shows it: --device=ID.
func (s *flagSpec) display() string {
	switch {
	case s.isBool():
		return "--" + s.name
	case s.placeholder != "":
		p := s.placeholder
		if s.field.Kind() == reflect.Slice {
			p += ",..."
		}
		return "--" + s.name + "=" + p
	case s.hasDefault && s.def != "":
		if s.field.Kind() == reflect.String {
			return "--" + s.name + "=" + strconv.Quote(s.def)
		}
		return "--" + s.name + "=" + s.def
	default:
		return "--" + s.name + "=" + strings.ToUpper(s.name)
	}
}

// set stores one value given for the flag (from the command line, the
// environment or its default). Slices take a comma-separated list and grow
// on every use; maps take K=V.
func (s *flagSpec) set(val string) error {
	fv := s.field
	switch {
	case fv.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(val)
		if err != nil {
			return fmt.Errorf("--%s: expected duration but got %q: %w", s.name, val, err)
		}
		fv.SetInt(int64(d))
	case fv.Kind() == reflect.String:
		fv.SetString(val)
	case fv.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("--%s: expected a bool but got %q", s.name, val)
		}
		fv.SetBool(b)
	case fv.Kind() == reflect.Int:
		n, err := strconv.ParseInt(val, 0, strconv.IntSize)
		if err != nil {
			return fmt.Errorf("--%s: expected a valid %d bit int but got %q", s.name, strconv.IntSize, val)
		}
		fv.SetInt(n)
	case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.String:
		for _, part := range strings.Split(val, ",") {
			fv.Set(reflect.Append(fv, reflect.ValueOf(part)))
		}
	case fv.Kind() == reflect.Map && fv.Type().Key().Kind() == reflect.String && fv.Type().Elem().Kind() == reflect.String:
		parts := []string{val}
		if s.mapSep != "none" {
			parts = strings.Split(val, s.mapSep)
		}
		if fv.IsNil() {
			fv.Set(reflect.MakeMap(fv.Type()))
		}
		for _, kv := range parts {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return fmt.Errorf("--%s: expected \"<key>=<value>\" but got %q", s.name, kv)
			}
			fv.SetMapIndex(reflect.ValueOf(k), reflect.ValueOf(v))
		}
	default:
		panic(fmt.Sprintf("fleet-agent flags: --%s: unsupported type %s", s.name, fv.Type()))
	}
	return nil
}

// parseFlags fills *v from args and the environment: a flag's default, then
// its environment variable, then the command line. It returns errHelp for
// -h/--help.
func parseFlags(v any, args []string, getenv func(string) string) error {
	specs := flagSpecs(v)
	byName := map[string]*flagSpec{}
	for _, s := range specs {
		byName["--"+s.name] = s
		if s.short != "" {
			byName["-"+s.short] = s
		}
	}
	seen := map[*flagSpec]bool{}
	help := false
	onlyArgs := false
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if onlyArgs || arg == "-" || !strings.HasPrefix(arg, "-") {
			return fmt.Errorf("unexpected argument %s", arg)
		}
		if arg == "--" {
			onlyArgs = true
			continue
		}
		if arg == "-h" || arg == "--help" {
			help = true
			continue
		}
		name, val, hasVal := strings.Cut(arg, "=")
		if !strings.HasPrefix(arg, "--") && len(arg) > 2 { // -ojson (and, as kong, -o=json is "=json")
			name, val, hasVal = arg[:2], arg[2:], true
		}
		s := byName[name]
		if s == nil {
			return fmt.Errorf("unknown flag %s", name)
		}
		if s.field.Kind() == reflect.Slice || s.field.Kind() == reflect.Map {
			if !seen[s] { // the command line replaces the default and environment
				s.field.Set(reflect.Zero(s.field.Type()))
			}
		}
		if s.isBool() && !hasVal {
			val, hasVal = "true", true
		}
		if !hasVal {
			if i+1 >= len(args) {
				return fmt.Errorf("--%s: missing value", s.name)
			}
			i++
			val = args[i]
		}
		seen[s] = true
		if err := s.set(val); err != nil {
			return err
		}
	}
	if help {
		return errHelp
	}
	cfg, err := loadConfig(byName["--config"], seen, getenv)
	if err != nil {
		return err
	}
	var missing []string
	for _, s := range specs {
		if !seen[s] {
			e := ""
			if s.env != "" {
				e = getenv(s.env)
			}
			fromFile, inFile := cfg.Lookup(s.name)
			var err error
			switch {
			case e != "":
				err = s.set(e)
			case inFile:
				for _, v := range fromFile {
					if err = s.set(v); err != nil {
						err = fmt.Errorf("config file %s: %w", cfg.Path, err)
						break
					}
				}
			case s.hasDefault:
				err = s.set(s.def)
			}
			if err != nil {
				return err
			}
			if s.required && e == "" && !inFile {
				missing = append(missing, s.display())
			}
		}
		if len(s.enum) > 0 {
			got := s.field.String()
			ok := false
			for _, e := range s.enum {
				ok = ok || e == got
			}
			if !ok {
				return fmt.Errorf("--%s must be one of %s but got %q", s.name, `"`+strings.Join(s.enum, `","`)+`"`, got)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing flags: %s", strings.Join(missing, ", "))
	}
	return nil
}

// loadConfig reads the config file named by the --config flag (given on
// the command line, else by its environment variable), if there is one:
// command line > environment > config file > default.
func loadConfig(s *flagSpec, seen map[*flagSpec]bool, getenv func(string) string) (*agentcli.Config, error) {
	path := ""
	switch {
	case s == nil:
	case seen[s]:
		path = s.field.String()
	case s.env != "":
		path = getenv(s.env)
	}
	return agentcli.LoadConfig(path)
}

// usage writes the help: usage line, description, the command's long help
// and the flags.
func usage(w io.Writer, v any, name, description, long string) {
	specs := flagSpecs(v)
	line := "Usage: " + name
	for _, s := range specs {
		if s.required {
			line += " " + s.display()
		}
	}
	fmt.Fprintf(w, "%s [flags]\n\n%s\n\n%s\n\nFlags:\n", line, description, long)
	type row struct{ left, help string }
	rows := []row{{"  -h, --help", "Show context-sensitive help."}}
	for _, s := range specs {
		left := "      " + s.display()
		if s.short != "" {
			left = "  -" + s.short + ", " + s.display()
		}
		h := s.help
		if s.hasDefault && s.def != "" && !strings.Contains(s.display(), s.def) {
			h = strings.TrimSuffix(h, ".") + " (default: " + s.def + ")."
		}
		if s.env != "" {
			h += " ($" + s.env + ")."
			h = strings.Replace(h, ". ($", " ($", 1)
		}
		rows = append(rows, row{left, h})
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.left))
	}
	for _, r := range rows {
		pad := r.left + strings.Repeat(" ", width-len(r.left)+4)
		lines := wrap(r.help, max(80-len(pad), 30))
		for i, l := range lines {
			if i > 0 {
				pad = strings.Repeat(" ", len(pad))
			}
			fmt.Fprintln(w, pad+l)
		}
	}
}

func wrap(s string, width int) []string {
	var lines []string
	cur := ""
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	return append(lines, cur)
}
