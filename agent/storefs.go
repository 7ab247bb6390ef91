package agent

import "github.com/cockroachdb/pebble/v2/vfs"

// WithStoreFS puts the agent's Pebble store (its snapshot and outbox, under
// <state>/store) on fs instead of the operating system's file system. The
// store is the same store, written and synced the same way: only where its
// files live changes. fleet sim gives each simulated device its own
// vfs.NewMem(), so that 10,000 stores hold no file descriptors (a store on
// disk holds eight: its log, MANIFEST, LOCK and directories). The state
// directory itself (the store's mark, the file reconciler's spares) stays
// on disk. An agent started again on the same fs finds its store; one
// started on a new memory fs starts empty (and, with a mark left on disk,
// reports the store as damaged). Nil is the default.
func WithStoreFS(fs vfs.FS) Option { return func(o *options) { o.storeFS = fs } }
