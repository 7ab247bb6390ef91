package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// stopErrors gathers what the server's parts could not do while stopping
// (a derived store that could not write its last batches on a full disk):
// each is logged when it happens, and RunningServer.Stop returns them all,
// so `fleet server` exits non-zero saying so.
type stopErrors struct {
	mu   sync.Mutex
	errs []error
}

func (s *stopErrors) add(err error) {
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "fleet server: stopping:", err)
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *stopErrors) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.errs...)
}
