package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"os"
	"path/filepath"

	"github.com/alecthomas/kong"

	"github.com/fleet-dev/fleet/agent/agentcli/agentkong"
)

// kongCLI is CLI parsed by kong as `fleet agent` parses agentcli.Cmd: with
// the config file as a resolver.
type kongCLI struct{ CLI }

func (k *kongCLI) BeforeResolve(kctx *kong.Context) error { return agentkong.BeforeResolve(kctx) }

// fullConfig sets every key a config file may have.
const fullConfig = `device: pi-07
nats: nats://cfg:4222
creds: /etc/fleet/device.creds
tls-ca: /etc/fleet/ca.pem
root: @ROOT
state: /var/lib/fleet-agent/pi-07
drift-interval: 45s
concurrency: 3
allow-exec: true
label:
  site: lab
  rack: 3
trust: [ed25519:a, /etc/fleet/ops.pub]
format: json
`

// TestFlagsParseAsKong parses the same arguments and environment with the
// slim parser and with kong (which `fleet agent` uses for the same
// agentcli.Cmd): both must agree on the result or on refusing.
func TestFlagsParseAsKong(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		args   []string
		env    map[string]string
		config string // written to a file; @CFG in args and env is its path
	}{
		{args: []string{"--config", "@CFG"}, config: fullConfig},
		{args: []string{"--config=@CFG"}, config: fullConfig},
		{args: []string{}, env: map[string]string{"FLEET_AGENT_CONFIG": "@CFG"}, config: fullConfig},
		{args: []string{"--config", "@CFG", "--device", "cli-1", "--label", "x=y", "--trust", "k9", "--concurrency", "8", "--allow-exec=false"}, config: fullConfig},
		{args: []string{"--config", "@CFG"}, env: map[string]string{"FLEET_NATS": "nats://env:1", "FLEET_TRUST": "e1,e2", "FLEET_CREDS": "env.creds"}, config: fullConfig},
		{args: []string{"--config", "@CFG", "--nats", "nats://cli:1"}, env: map[string]string{"FLEET_NATS": "nats://env:1"}, config: fullConfig},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: ""},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "# nothing set\n"},
		{args: []string{"--config", "@CFG"}, config: "root: /\n"}, // no device anywhere
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "drift-intervl: 1m\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "drift-interval: soon\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "drift-interval: 60\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "concurrency: \"4\"\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "concurrency: 2.5\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "allow-exec: \"yes\"\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "trust: ed25519:a\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "label: [a=b]\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "format: yaml\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "deregister: true\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "- device\n"},
		{args: []string{"--config", "@CFG", "--device", "d"}, config: "device: [\n"},
		{args: []string{"--config", "/nonexistent/agent.yaml", "--device", "d"}},
		{args: []string{"--config", "../../deploy/systemd/agent.yaml"}},
		{args: []string{"--config", "../../deploy/systemd/agent.yaml", "--creds", "/run/credentials/fleet-agent.service/device.creds"}},
		{args: []string{"--device", "pi-01"}},
		{args: []string{"--device=pi-01", "--root", root, "--state", "/tmp/s", "--drift-interval", "10s", "--concurrency", "4"}},
		{args: []string{"--device", "pi-01", "--allow-exec", "--deregister", "--parked", "-o", "json"}},
		{args: []string{"--device", "pi-01", "-ojson"}},
		{args: []string{"--device", "pi-01", "-o=json"}},
		{args: []string{"--device", "pi-01", "--format", "json", "--allow-exec=false"}},
		{args: []string{"--device", "pi-01", "--label", "site=lab", "--label", "rack=3", "--label", "a=b;c=d", "--label=e=f=g"}},
		{args: []string{"--device", "pi-01", "--trust", "ed25519:a", "--trust", "k1,k2"}},
		{args: []string{"--device", "pi-01", "--nats", "nats://hub:4222", "--creds", "pi.creds"}},
		{args: []string{"--device", "pi-01", "--nats", "tls://hub:4222", "--tls-ca", "ca.pem"}},
		{args: []string{"--device", "pi-01"}, env: map[string]string{"FLEET_TLS_CA": "env-ca.pem"}},
		{args: []string{"--device", "pi-01"}, env: map[string]string{"FLEET_NATS": "nats://e:1", "FLEET_CREDS": "e.creds", "FLEET_TRUST": "a,b"}},
		{args: []string{"--device", "pi-01", "--nats", "nats://f:1", "--trust", "c"}, env: map[string]string{"FLEET_NATS": "nats://e:1", "FLEET_TRUST": "a,b"}},
		{args: []string{"--device", "pi-01", "--", "x"}},
		{args: []string{}},
		{args: []string{"--root", root}},
		{args: []string{"--device", "pi-01", "--format", "yaml"}},
		{args: []string{"--device", "pi-01", "-o"}},
		{args: []string{"--device", "pi-01", "--bogus"}},
		{args: []string{"--device", "pi-01", "extra"}},
		{args: []string{"--device", "pi-01", "--concurrency", "x"}},
		{args: []string{"--device", "pi-01", "--drift-interval", "soon"}},
		{args: []string{"--device", "pi-01", "--label", "novalue"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " ")+" "+c.config, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "agent.yaml")
			if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(c.config, "@ROOT", root)), 0o600); err != nil {
				t.Fatal(err)
			}
			args := make([]string, len(c.args))
			for i, a := range c.args {
				args[i] = strings.ReplaceAll(a, "@CFG", cfg)
			}
			env := map[string]string{}
			for k, v := range c.env {
				env[k] = strings.ReplaceAll(v, "@CFG", cfg)
				t.Setenv(k, env[k])
			}
			var slim CLI
			slimErr := parseFlags(&slim, args, func(k string) string { return env[k] })
			var kcli kongCLI
			parser, err := kong.New(&kcli, kong.Name("fleet-agent"), kong.Exit(func(int) { t.Fatal("kong exited") }))
			if err != nil {
				t.Fatal(err)
			}
			_, kongErr := parser.Parse(args)
			want := kcli.CLI
			if (slimErr == nil) != (kongErr == nil) {
				t.Fatalf("slim: %v, kong: %v", slimErr, kongErr)
			}
			if kongErr != nil {
				t.Logf("both refuse: slim %q, kong %q", slimErr, kongErr)
				return
			}
			if !reflect.DeepEqual(slim, want) {
				t.Fatalf("slim parsed\n%+v\nkong parsed\n%+v", slim, want)
			}
		})
	}
}

func TestHelpListsEveryFlag(t *testing.T) {
	var cli CLI
	if err := parseFlags(&cli, []string{"--help"}, func(string) string { return "" }); err != errHelp {
		t.Fatalf("--help: %v", err)
	}
	var out bytes.Buffer
	usage(&out, &cli, "fleet-agent", description, helpText(&cli))
	if strings.Contains(out.String(), "fleet agent ") {
		t.Errorf("fleet-agent --help shows 'fleet agent' examples:\n%s", out.String())
	}
	for _, want := range []string{"fleet-agent --device pi-01", "(default: /)", "(default: /var/lib/fleet-agent)", "--config=FILE"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("fleet-agent --help lacks %q", want)
		}
	}
	for _, s := range flagSpecs(&cli) {
		if !strings.Contains(out.String(), s.display()) {
			t.Errorf("help lacks %s:\n%s", s.display(), out.String())
		}
	}
	t.Log("\n" + out.String())
}

// TestConfigFilePrecedence: command line > environment > config file >
// default, and the file's values typed as the flags.
func TestConfigFilePrecedence(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(fullConfig, "@ROOT", root)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLEET_NATS": "nats://env:1", "FLEET_AGENT_CONFIG": cfg}
	var cli CLI
	err := parseFlags(&cli, []string{"--device", "cli-1", "--trust", "k9"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"device (command line over file)", cli.Device, "cli-1"},
		{"trust (command line over file)", cli.Trust, []string{"k9"}},
		{"nats (environment over file)", cli.NATS, "nats://env:1"},
		{"creds (file)", cli.Creds, "/etc/fleet/device.creds"},
		{"drift-interval (file)", cli.DriftInterval.String(), "45s"},
		{"concurrency (file)", cli.Concurrency, 3},
		{"allow-exec (file)", cli.AllowExec, true},
		{"label (file)", cli.Label, map[string]string{"site": "lab", "rack": "3"}},
		{"format (file)", cli.Format, "json"},
		{"root (file)", cli.Root, root},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	cli = CLI{}
	if err := parseFlags(&cli, []string{"--device", "d"}, func(string) string { return "" }); err != nil || cli.DriftInterval.String() != "1m0s" {
		t.Fatalf("no config file: %v, drift-interval %s (want the default 1m)", err, cli.DriftInterval)
	}
}

// TestSampleAgentConfigParses: deploy/systemd/agent.yaml, with the flags the
// unit adds, parses with the real parser into options the agent accepts.
func TestSampleAgentConfigParses(t *testing.T) {
	var cli CLI
	args := []string{"--config", "../../deploy/systemd/agent.yaml", "--creds", "/run/credentials/fleet-agent.service/device.creds"}
	if err := parseFlags(&cli, args, func(string) string { return "" }); err != nil {
		t.Fatal(err)
	}
	if cli.Device != "pi-01" || cli.Root != "/" || cli.State != "/var/lib/fleet-agent" || cli.NATS != "nats://fleet-hub.lan:4222" || cli.Label["rack"] != "3" {
		t.Fatalf("sample config parsed as %+v", cli)
	}
	if _, err := cli.Options(); err != nil {
		t.Fatalf("the agent refuses the sample config: %v", err)
	}
}
