//go:build !linux

package sim

// Lowering the simulated devices' priority is Linux only (nice_linux.go);
// elsewhere Config.Nice is refused.

type spawner struct{}

func newSpawner() *spawner { return &spawner{} }

func (sp *spawner) run(f func() error) error { return f() }

func lowerPriority(int, *spawner, <-chan struct{}) error { return nil }

// DefaultNice is fleet sim's --nice when it is not given.
const DefaultNice = 0

const niceSupported = false
