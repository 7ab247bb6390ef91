package main

import (
	"context"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestPartitionFlagIsCheckedBeforeConnecting: a bad --partition is a usage
// error (exit 2) naming the flag and the rule, before any connection.
func TestPartitionFlagIsCheckedBeforeConnecting(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"2/2", "I must be from 0 to N-1"},
		{"0/0", "N must be from 1 to"},
		{"half", "must be I/N"},
	} {
		is := is.New(t)
		err := (&ProjectCmd{Partition: tc.in, Durable: "fleet-project", Data: t.TempDir()}).Run(context.Background(), &Globals{NATS: "nats://127.0.0.1:1"})
		is.True(err != nil)
		is.Equal(exitCode(err), 2)
		is.True(strings.Contains(err.Error(), "--partition"))
		is.True(strings.Contains(err.Error(), tc.want))
	}
}
