package main

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// listenFree checks that addr can be listened on, so that a taken --listen
// port is reported at once with what to do (the embedded server would only
// say it was not ready after its start timeout).
func listenFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return fmt.Errorf("--listen %s: the address is in use by another process (another fleet server? find it with: ss -ltnp | grep %s); stop it or pick another address with --listen", addr, portOf(addr))
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
