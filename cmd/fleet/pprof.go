package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
)

// startPprof serves Go's profiles on FLEET_PPROF (a loopback address such
// as 127.0.0.1:6060) when it is set: how the scale figures of BENCHMARKS.md
// were taken apart. It is refused on any other address: the profiles show
// the process's memory and are served without credentials.
func startPprof() { startPprofOn(os.Getenv("FLEET_PPROF"), os.Stderr) }

// startPprofOn serves the profiles on addr, saying where (or why not) on w;
// it returns the address it serves on, "" if none.
func startPprofOn(addr string, w io.Writer) string {
	if addr == "" {
		return ""
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(w, "fleet: FLEET_PPROF=%q ignored: it must be a loopback address and port, such as 127.0.0.1:6060\n", addr)
		return ""
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// a child process (fleet sim's server) inherits the variable: the
	// next free port of the ten after it is taken, and named
	_, port, _ := net.SplitHostPort(addr)
	first, _ := strconv.Atoi(port)
	for p := first; p < first+10; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "fleet: profiles of pid %d at http://%s/debug/pprof/\n", os.Getpid(), l.Addr())
		go func() { _ = http.Serve(l, mux) }()
		return l.Addr().String()
	}
	fmt.Fprintf(w, "fleet: FLEET_PPROF: no free port from %s on\n", addr)
	return ""
}
