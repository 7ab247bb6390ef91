package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// logger is the server's log routed to a *slog.Logger (server.Logger). It
// also keeps the last warnings and errors, for health reports.
type logger struct {
	l       *slog.Logger
	problem func(msg string) // told every warning and error

	mu     sync.Mutex
	recent []Problem // newest last, at most maxRecent
}

// Problem is a warning or error the server logged.
type Problem struct {
	At      time.Time `json:"at"`
	Level   string    `json:"level"` // "warn" or "error"
	Message string    `json:"message"`
}

const maxRecent = 20

func newLogger(l *slog.Logger) *logger {
	if l == nil {
		h := slog.Default().Handler()
		l = slog.New(levelAtLeast{h, slog.LevelWarn})
	}
	return &logger{l: l.With("component", "nats-server")}
}

func (g *logger) log(level slog.Level, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	g.l.Log(context.Background(), level, msg)
	if level < slog.LevelWarn {
		return
	}
	name := "warn"
	if level >= slog.LevelError {
		name = "error"
	}
	if g.problem != nil {
		g.problem(msg)
	}
	g.mu.Lock()
	g.recent = append(g.recent, Problem{At: time.Now(), Level: name, Message: msg})
	if len(g.recent) > maxRecent {
		g.recent = g.recent[len(g.recent)-maxRecent:]
	}
	g.mu.Unlock()
}

func (g *logger) Noticef(format string, v ...any) { g.log(slog.LevelInfo, format, v...) }
func (g *logger) Warnf(format string, v ...any)   { g.log(slog.LevelWarn, format, v...) }
func (g *logger) Errorf(format string, v ...any)  { g.log(slog.LevelError, format, v...) }
func (g *logger) Fatalf(format string, v ...any)  { g.log(slog.LevelError, "fatal: "+format, v...) }
func (g *logger) Debugf(format string, v ...any)  {}
func (g *logger) Tracef(format string, v ...any)  {}

// Problems returns the last warnings and errors the server logged, oldest
// first (at most 20).
func (s *Server) Problems() []Problem {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	return append([]Problem(nil), s.log.recent...)
}

// levelAtLeast passes records at or above min to h.
type levelAtLeast struct {
	h   slog.Handler
	min slog.Level
}

func (l levelAtLeast) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.h.Enabled(ctx, lv)
}
func (l levelAtLeast) Handle(ctx context.Context, r slog.Record) error { return l.h.Handle(ctx, r) }
func (l levelAtLeast) WithAttrs(a []slog.Attr) slog.Handler {
	return levelAtLeast{l.h.WithAttrs(a), l.min}
}
func (l levelAtLeast) WithGroup(n string) slog.Handler { return levelAtLeast{l.h.WithGroup(n), l.min} }
