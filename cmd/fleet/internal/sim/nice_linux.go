package sim

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// On one machine the simulated devices and the server share the cores; in
// a fleet each device has a machine of its own and never takes the
// server's CPU. With Config.Nice the simulator runs its own threads (every
// agent, and the simulator's bookkeeping) that much lower than the server,
// so the server has first claim on the cores, as on a machine of its own.
// The devices' work is still done on the same cores and counted in the
// report. Linux's nice value belongs to each thread and a child process
// takes the one of the thread that started it, so the server is started
// (and restarted, in the reconnect scenario) from one thread that is kept
// at the simulator's original priority. Raising one's own nice value needs
// no privilege.

// spawner runs functions on one locked OS thread left at the process's
// original priority.
type spawner struct {
	tid  int
	work chan func()
}

func newSpawner() *spawner {
	sp := &spawner{work: make(chan func())}
	ready := make(chan int)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is this goroutine's for good
		ready <- syscall.Gettid()
		for f := range sp.work {
			f()
		}
	}()
	sp.tid = <-ready
	return sp
}

// run runs f on the spawner's thread.
func (sp *spawner) run(f func() error) error {
	var err error
	done := make(chan struct{})
	sp.work <- func() { err = f(); close(done) }
	<-done
	return err
}

// lowerPriority adds nice to every thread of the process but the
// spawner's, now and every second after (threads the Go runtime starts
// later take the priority of the thread that starts them, which is a
// lowered one, but the check costs nothing), until stop is closed.
func lowerPriority(nice int, sp *spawner, stop <-chan struct{}) error {
	base, err := syscall.Getpriority(syscall.PRIO_PROCESS, sp.tid)
	if err != nil {
		return fmt.Errorf("read the simulator's priority: %w", err)
	}
	// getpriority returns 20 - nice
	want := min(20-base+nice, 19)
	var mu sync.Mutex
	done := map[int]bool{}
	pass := func() error {
		mu.Lock()
		defer mu.Unlock()
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || tid == sp.tid || done[tid] {
				continue
			}
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, want); err != nil && err != syscall.ESRCH {
				return fmt.Errorf("lower the priority of thread %d to nice %d: %w", tid, want, err)
			}
			done[tid] = true
		}
		return nil
	}
	if err := pass(); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = pass()
			}
		}
	}()
	return nil
}

// DefaultNice is fleet sim's --nice when it is not given.
const DefaultNice = 10

const niceSupported = true
