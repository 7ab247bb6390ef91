package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestDemoRunsTheStoryAndExitsZero builds fleet and runs the README's first
// command as a user would (a fresh temporary directory, any free port), then
// checks the summary: every device Ready but the one meant to fail, the log
// verified, and the temporary data removed.
func TestDemoRunsTheStoryAndExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleet and runs `fleet demo --for 20s`")
	}
	is := is.New(t)
	bin := buildFleet(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--devices", "6", "--for", "20s", "--http", "127.0.0.1:0")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	is.NoErr(err)
	start := time.Now()
	is.NoErr(cmd.Start())
	var out strings.Builder
	var sawURL, sawFirst time.Duration
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		switch {
		case sawURL == 0 && strings.HasPrefix(line, "fleet demo: dashboard http://"):
			sawURL = time.Since(start)
		case sawFirst == 0 && strings.Contains(line, "first converged device"):
			sawFirst = time.Since(start)
		}
	}
	err = cmd.Wait()
	t.Logf("fleet demo output:\n%s\nstderr:\n%s", out.String(), stderr.String())
	t.Logf("dashboard address after %s, first converged device after %s", sawURL, sawFirst)
	is.NoErr(err) // exit code 0
	text := out.String()

	is.True(sawURL > 0)   // prints the dashboard address
	is.True(sawFirst > 0) // reports the first converged device
	for _, dev := range []string{"pi-01", "pi-02", "pi-03", "pi-04", "pi-05"} {
		is.True(regexp.MustCompile(`(?m)^` + dev + `\s+Ready\s`).MatchString(text)) // every device but the failing one is Ready
	}
	is.True(regexp.MustCompile(`(?m)^pi-06\s+NOT READY\s.*sensor-calib Failed.*meant to fail`).MatchString(text)) // the failing one is not
	is.True(strings.Contains(text, "=== Drift history"))
	is.True(regexp.MustCompile(`(?m)^pi-01\s+motd\s.*reconciled`).MatchString(text))        // drift corrected
	is.True(regexp.MustCompile(`(?m)^pi-05\s+app-config\s.*reconciled`).MatchString(text))  // corrected while offline, on the log after
	is.True(strings.Contains(text, "then: generation 1"))                                   // time travel to before the rollout
	is.True(strings.Contains(text, "the server's time-travel index gives the same answer")) // index and fold agree
	is.True(regexp.MustCompile(`(?m)^verify: passed: verified \d+ events of 6 devices: 0 violations`).MatchString(text))

	left, err := filepath.Glob(filepath.Join(tmp, "fleet-demo-*"))
	is.NoErr(err)
	is.Equal(len(left), 0) // temporary data removed
}

// buildFleet builds the fleet binary into a temporary directory.
func buildFleet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleet")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build ./cmd/fleet: %v", err)
	}
	return bin
}

// TestDemoJSONSummary: with -o json, stdout is one JSON summary (progress
// goes to stderr) with the devices, the drift, the time-travel answer and
// the verify result.
func TestDemoJSONSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds fleet and runs `fleet demo`")
	}
	is := is.New(t)
	bin := buildFleet(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "demo", "--devices", "3", "--pace", "0s", "--for", "1ms", "--http", "127.0.0.1:0", "-o", "json")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("stderr:\n%s", stderr.String())
	is.NoErr(err) // exit 0
	var sum struct {
		Dashboard string `json:"dashboard"`
		Failing   string `json:"failing"`
		Devices   []struct {
			Device     string `json:"device"`
			Conditions []struct{ Type, Status string }
		} `json:"devices"`
		Drift      []struct{ Device, Resource string } `json:"drift"`
		TimeTravel struct {
			Then        struct{ Generation int64 } `json:"then"`
			IndexAgrees *bool                      `json:"indexAgrees"`
		} `json:"timeTravel"`
		Verify struct{ Passed bool } `json:"verify"`
	}
	is.NoErr(json.Unmarshal(stdout.Bytes(), &sum)) // stdout is only the JSON summary
	is.True(strings.HasPrefix(sum.Dashboard, "http://127.0.0.1:"))
	is.Equal(sum.Failing, "pi-03")
	is.Equal(len(sum.Devices), 3)
	for _, d := range sum.Devices {
		ready := ""
		for _, c := range d.Conditions {
			if c.Type == "Ready" {
				ready = c.Status
			}
		}
		is.Equal(ready == "True", d.Device != sum.Failing) // Ready but for the failing one
	}
	is.Equal(len(sum.Drift), 2) // the edit on pi-01 and the one on the offline pi-02
	is.Equal(sum.TimeTravel.Then.Generation, int64(1))
	is.True(sum.TimeTravel.IndexAgrees != nil && *sum.TimeTravel.IndexAgrees)
	is.True(sum.Verify.Passed)
	is.True(strings.Contains(stderr.String(), "fleet demo: dashboard http://")) // progress went to stderr
}

// TestDemoRefusesBadFlags: bad input exits 2 naming the flag, before
// anything starts.
func TestDemoRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--devices", "2"},
		{"demo", "--devices", "1000"},
		{"demo", "--for", "-1s"},
		{"demo", "--pace", "2h"},
		{"demo", "--http", "nonsense"},
	} {
		t.Run(strings.Join(args[1:], " "), func(t *testing.T) {
			is := is.New(t)
			is.Equal(run(args), exitUsage)
		})
	}
}
