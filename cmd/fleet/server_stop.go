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
	if len(s.errs) == 0 {
		return nil
	}
	return &stopError{errors.Join(s.errs...), len(s.errs)}
}

// stopError is what `fleet server` exits with when a part could not stop
// cleanly; its message points at the lines logged above it.
type stopError struct {
	err error
	n   int
}

func (e *stopError) Error() string {
	return fmt.Sprintf("%d part(s) could not write everything while stopping (see above); free space on the data directory's file system before the next start", e.n)
}

func (e *stopError) Unwrap() error { return e.err }
