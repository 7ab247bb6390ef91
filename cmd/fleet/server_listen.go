package main

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/fleet-dev/fleet/internal/hint"
)

// listenFree checks that addr can be listened on, so that a taken --listen
// port is reported at once with what to do (the embedded server would only
// say it was not ready after its start timeout).
func listenFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			who := "another process (another fleet server? find it with: ss -ltnp | grep " + portOf(addr) + ")"
			if pid, ok := hint.PortHolder(addr); ok {
				who = hint.Process(pid)
			}
			return fmt.Errorf("--listen %s: the address is in use by %s; stop it or pick another address with --listen", addr, who)
		case errors.Is(err, syscall.EACCES):
			return fmt.Errorf("--listen %s: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a port such as 4222", addr)
		}
		return fmt.Errorf("--listen %s: %w", addr, err)
	}
	return ln.Close()
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return ":" + p
}
