package main

import (
	"context"
	"net"
	"strings"
	"testing"

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
	is.True(strings.Contains(err.Error(), "pick another address with --listen"))
}
