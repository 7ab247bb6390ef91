package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/matryer/is"
)

// TestPprofServesOnLoopbackOnly: FLEET_PPROF serves the profiles on a
// loopback address (the next free port when the first is taken, as a
// child process finds its parent's), and is refused, with the reason, on
// any other address or a malformed one.
func TestPprofServesOnLoopbackOnly(t *testing.T) {
	is := is.New(t)
	for _, bad := range []string{"0.0.0.0:6060", "192.0.2.1:6060", ":6060", "localhost", "127.0.0.1"} {
		var w bytes.Buffer
		is.Equal(startPprofOn(bad, &w), "")
		is.True(strings.Contains(w.String(), "must be a loopback address")) // says why
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	is.NoErr(err)
	defer taken.Close()
	var w bytes.Buffer
	addr := startPprofOn(taken.Addr().String(), &w)
	is.True(addr != "" && addr != taken.Addr().String()) // the next port
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	p, _ := strconv.Atoi(port)
	_, got, _ := net.SplitHostPort(addr)
	g, _ := strconv.Atoi(got)
	is.True(g > p && g < p+10)
	is.True(strings.Contains(w.String(), "profiles of pid"))
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	is.NoErr(err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	is.Equal(resp.StatusCode, 200)
	is.True(strings.Contains(string(body), "goroutine"))
}
