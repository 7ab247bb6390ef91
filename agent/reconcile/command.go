package reconcile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// runTool runs a device tool (systemctl, podman) found on PATH, returning
// its trimmed stdout and exit code. A non-zero exit is not an error here;
// callers decide. Failure to start the program is.
func runTool(ctx context.Context, name string, args ...string) (out string, code int, stderr string, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && ctx.Err() == nil {
		return strings.TrimSpace(o.String()), exitErr.ExitCode(), strings.TrimSpace(e.String()), nil
	}
	if err != nil {
		return "", -1, "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(o.String()), 0, strings.TrimSpace(e.String()), nil
}

// mustTool runs a tool and makes a non-zero exit an error naming the
// command, its exit status and its message.
func mustTool(ctx context.Context, name string, args ...string) (string, error) {
	out, code, stderr, err := runTool(ctx, name, args...)
	if err != nil {
		return "", err
	}
	if code != 0 {
		msg := stderr
		if msg == "" {
			msg = out
		}
		return out, fmt.Errorf("%s %s: exit status %d: %s", name, strings.Join(args, " "), code, msg)
	}
	return out, nil
}
