package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"
)

// TestServerReportsATakenListenPort: --listen on a port another process
// holds fails naming the address, that it is in use, and what to do (it
// used to wait for the embedded server's 10 s start timeout and then say
// "not ready").
func TestServerReportsATakenListenPort(t *testing.T) {
	is := is.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	defer ln.Close()
	cmd := &ServerCmd{Data: t.TempDir(), Listen: ln.Addr().String(), Replicas: 1}
	_, err = cmd.Start(context.Background(), &Globals{}, nil)
	is.True(err != nil)
	is.True(strings.Contains(err.Error(), "--listen "+ln.Addr().String()+": the address is in use"))
	is.True(strings.Contains(err.Error(), fmt.Sprintf("in use by PID %d (this process)", os.Getpid()))) // from /proc/net/tcp and /proc/*/fd
	is.True(strings.Contains(err.Error(), "pick another address with --listen"))
}

// TestServerOnADataDirectoryInUseNamesThePID: a second server on a data
// directory a running one keeps its stores in says "in use by PID N" and
// what to do, not "resource temporarily unavailable".
func TestServerOnADataDirectoryInUseNamesThePID(t *testing.T) {
	is := is.New(t)
	data := t.TempDir()
	first, err := (&ServerCmd{Data: data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Start(context.Background(), &Globals{}, nil)
	is.NoErr(err)
	defer first.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = (&ServerCmd{Data: data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1, HeartbeatTTL: 10 * time.Second}).Run(ctx, &Globals{})
	is.True(err != nil)
	t.Log(err)
	is.True(strings.Contains(err.Error(), fmt.Sprintf("--data %s is in use by PID %d", data, os.Getpid())))
	is.True(strings.Contains(err.Error(), "give this one another --data"))
}
