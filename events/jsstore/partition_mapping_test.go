package jsstore_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// TestPartitionOfIsTheServersPartitionMapping: a real server with the
// subject mapping events.PartitionMapping maps each of 2,000 device ids to
// the partition events.PartitionOf computes, for N = 2, 3 and 7; and
// OwnsSubject gives every subject to exactly one worker.
func TestPartitionOfIsTheServersPartitionMapping(t *testing.T) {
	is := is.New(t)
	env := eventstest.Start(t, true)
	acc := env.Server.GlobalAccount()
	for _, n := range []int{2, 3, 7} {
		src, dest := events.PartitionMapping(n)
		src = strings.Replace(src, events.Prefix, fmt.Sprintf("probe%d", n), 1) // outside the stream's subjects
		dest = strings.Replace(dest, events.Prefix, fmt.Sprintf("probe%d", n), 1)
		is.NoErr(acc.AddMapping(src, dest))
		sub, err := env.Conn.SubscribeSync("part.>")
		is.NoErr(err)
		const devices = 2000
		for i := range devices {
			is.NoErr(env.Conn.Publish(fmt.Sprintf("probe%d.dev-%04d.lifecycle", n, i), nil))
		}
		for range devices {
			m, err := sub.NextMsg(5 * time.Second)
			is.NoErr(err)
			tok := strings.Split(m.Subject, ".") // part.<p>.probeN.<device>.lifecycle
			got, _ := strconv.Atoi(tok[1])
			if want := events.PartitionOf(tok[3], n); got != want {
				t.Fatalf("N=%d: the server maps %s to partition %d, PartitionOf says %d", n, tok[3], got, want)
			}
			owners := 0
			for i := range n {
				if (events.Partition{I: i, N: n}).OwnsSubject(events.LifecycleSubject(tok[3])) {
					owners++
				}
			}
			is.Equal(owners, 1)
		}
		_ = sub.Unsubscribe()
	}
	for _, bad := range []string{"2/2", "-1/2", "0/0", "x", "1/", "0/2000"} {
		_, err := events.ParsePartition(bad)
		is.True(err != nil)
	}
	p, err := events.ParsePartition("1/3")
	is.NoErr(err)
	is.Equal(p, events.Partition{I: 1, N: 3})
}
