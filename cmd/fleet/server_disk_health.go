package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/fleet-dev/fleet/internal/hint"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// Disk space below which the "disk" check fails: less than minFreeFraction
// of the data directory's file system, or less than minFreeBytes.
const (
	minFreeFraction = 0.05
	minFreeBytes    = 64 << 20
)

// DiskDetail is the "disk" check's detail: the data directory's file system.
type DiskDetail struct {
	Path       string  `json:"path"`
	TotalBytes uint64  `json:"totalBytes"`
	FreeBytes  uint64  `json:"freeBytes"` // available to the server (not reserved for root)
	UsedPct    float64 `json:"usedPct"`
}

// diskCheck is the "disk" check of the data directory dir.
func diskCheck(dir string) api.Check {
	free, total, err := hint.Space(dir)
	if err != nil {
		return api.Check{Name: "disk", Reason: fmt.Sprintf("cannot read the data directory's file system: %v", err),
			Action: "check that " + dir + " exists and the server can read it"}
	}
	d := DiskDetail{Path: dir, TotalBytes: total, FreeBytes: free}
	if total > 0 {
		d.UsedPct = float64(total-free) / float64(total) * 100
	}
	c := api.Check{Name: "disk", OK: true, Detail: d}
	if free < minFreeBytes || float64(free) < minFreeFraction*float64(total) {
		c.OK = false
		c.Reason = fmt.Sprintf("the data directory %s has %s free of %s (%.0f%% used): the log stops taking events when it is full",
			dir, bytesText(free), bytesText(total), d.UsedPct)
		c.Action = "free space on that file system or move the data directory to a larger one (stop the server, move it, start with --data)"
	}
	return c
}

func bytesText(n uint64) string { return hint.Bytes(n) }

func init() {
	addServerPart("disk and auth health", func(_ context.Context, env *ServerEnv) (func(), error) {
		if env.Health == nil {
			return nil, nil
		}
		dir := env.DataDir
		env.Health.add(func() api.Check { return diskCheck(dir) })
		env.Health.add(func() api.Check { return storesCheck(dir) })
		authOn := env.Auth
		env.Health.add(func() api.Check {
			return api.Check{Name: "auth", OK: true, Detail: map[string]bool{"enabled": authOn}}
		})
		return nil, nil
	})
}

// StoreDetail is one derived store out of space in the "derived stores"
// check's detail.
type StoreDetail struct {
	Store     string `json:"store"`
	Path      string `json:"path"`
	FreeBytes uint64 `json:"freeBytes"`
}

// storesCheck is the "derived stores" check: it fails while the read models'
// or the time-travel index's store under dir refuses batches for want of
// disk space (projections.Writable), naming the store, its path and the
// free space.
func storesCheck(dir string) api.Check {
	fails := projections.StoreFailures(dir)
	c := api.Check{Name: "derived stores", OK: len(fails) == 0}
	if c.OK {
		return c
	}
	var reasons []string
	var detail []StoreDetail
	for _, f := range fails {
		reasons = append(reasons, f.Error())
		detail = append(detail, StoreDetail{Store: f.Name, Path: f.Dir, FreeBytes: f.Free})
	}
	c.Reason = strings.Join(reasons, "; ")
	c.Action = projections.StoreFullAction
	c.Detail = detail
	return c
}
