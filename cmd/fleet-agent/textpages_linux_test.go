package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestDropBinaryPagesUnmapsAndTheProcessRunsOn: after dropBinaryPages the
// test binary's file pages are fewer, and code and data still work (the
// writable mapping was left alone: package variables keep their values).
func TestDropBinaryPagesUnmapsAndTheProcessRunsOn(t *testing.T) {
	before := rssFileKB(t)
	dropBinaryPages()
	after := rssFileKB(t)
	if after >= before {
		t.Fatalf("RssFile %d kB after, %d kB before: nothing unmapped", after, before)
	}
	if got := fmt.Sprintf("%s %d", description[:11], defaultMemoryLimit); got != "fleet-agent 12582912" {
		t.Fatalf("after the drop: %q", got)
	}
	t.Logf("RssFile %d -> %d kB", before, after)
}

func rssFileKB(t *testing.T) int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "RssFile:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}
