package main

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// TestFlagsParseAsKong parses the same arguments and environment with the
// slim parser and with kong (which `fleet agent` uses for the same
// agentcli.Cmd): both must agree on the result or on refusing.
func TestFlagsParseAsKong(t *testing.T) {
	root := t.TempDir()
	cases := []struct {
		args []string
		env  map[string]string
	}{
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
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var slim CLI
			slimErr := parseFlags(&slim, c.args, func(k string) string { return c.env[k] })
			var want CLI
			parser, err := kong.New(&want, kong.Name("fleet-agent"), kong.Exit(func(int) { t.Fatal("kong exited") }))
			if err != nil {
				t.Fatal(err)
			}
			_, kongErr := parser.Parse(c.args)
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
	usage(&out, &cli, "fleet-agent", description, cli.Help())
	for _, s := range flagSpecs(&cli) {
		if !strings.Contains(out.String(), s.display()) {
			t.Errorf("help lacks %s:\n%s", s.display(), out.String())
		}
	}
	t.Log("\n" + out.String())
}
