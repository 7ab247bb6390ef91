package main

import (
	kongcompletion "github.com/jotaen/kong-completion"
)

func init() {
	register("completion", "Print the shell code that turns on tab completion for fleet (bash, zsh, fish).", "Getting started", &CompletionCmd{})
}

// CompletionCmd is `fleet completion [SHELL]`: kong-completion's command,
// which completes commands, flags and enum values from fleet's own kong
// model (the shell calls fleet back with COMP_LINE set).
type CompletionCmd struct {
	kongcompletion.Completion
}

// Help is shown by `fleet completion --help`.
func (c *CompletionCmd) Help() string {
	return `Without -c it says what to add to your shell's start-up file; with -c it
prints the code itself. Completion works for a fleet on your PATH.

Examples:
  fleet completion bash                 # what to do, for bash
  source <(fleet completion bash -c)    # this bash session
  fleet completion zsh -c >> ~/.zshrc
  fleet completion fish -c > ~/.config/fish/completions/fleet.fish`
}
