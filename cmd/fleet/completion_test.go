package main

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestShellCompletion: fleet answers a shell's completion request
// (COMP_LINE, as bash's `complete -C`, zsh's bashcompinit and fish's
// function call it) with commands, flags and enum values, and prints the
// code that wires it up for bash, zsh and fish.
func TestShellCompletion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleet")
	}
	is := is.New(t)
	bin := buildFleet(t)
	complete := func(line string) []string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "COMP_LINE="+line)
		out, err := cmd.Output()
		is.NoErr(err)
		return strings.Fields(string(out))
	}
	is.Equal(complete("fleet ge"), []string{"get"})
	enum := complete("fleet get devices -o ")
	slices.Sort(enum) // the library gives enum values in no fixed order
	is.Equal(enum, []string{"json", "table"})
	is.True(contains(complete("fleet rep"), "replay"))
	for shell, want := range map[string]string{"bash": "complete -o default", "zsh": "bashcompinit", "fish": "commandline -cp"} {
		out, err := exec.Command(bin, "completion", shell, "-c").Output()
		is.NoErr(err)
		is.True(strings.Contains(string(out), want)) // the shell's own wiring
		is.True(strings.Contains(string(out), bin))  // calls this binary back
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
