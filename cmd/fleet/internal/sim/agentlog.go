package sim

import (
	"context"
	"log/slog"
	"sort"
	"sync"
)

// logCounter is the agents' logger: it counts their warnings and errors by
// message (what 10,000 agents would print is the figure, not the lines).
type logCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func newLogCounter() *logCounter { return &logCounter{counts: map[string]int{}} }

func (c *logCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	key := r.Level.String() + ": " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "err" {
			return true
		}
		e := a.Value.String()
		if len(e) > 120 {
			e = e[:120] + "..."
		}
		key += " (" + e + ")"
		return false
	})
	c.mu.Lock()
	c.counts[key]++
	c.mu.Unlock()
	return nil
}

func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCounter) WithGroup(string) slog.Handler      { return c }

// LogCount is how often the agents logged one message.
type LogCount struct {
	Message string `json:"message"`
	Count   int    `json:"count"`
}

// snapshot returns the counts, most frequent first.
func (c *logCounter) snapshot() []LogCount {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]LogCount, 0, len(c.counts))
	for m, n := range c.counts {
		out = append(out, LogCount{m, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Message < out[j].Message
	})
	return out
}
