package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events/jsstore"
)

// ServerLimits are `fleet server`'s retention flags for the audit log.
type ServerLimits struct {
	RetentionMaxAge   string `name:"retention-max-age" placeholder:"DURATION" help:"Remove events older than this from the log (e.g. 365d or 8760h; units d, h, m, s). Default: keep every event for ever. Archive first: fleet export."`
	RetentionMaxBytes string `name:"retention-max-bytes" placeholder:"SIZE" help:"Keep at most this much log, removing the oldest events first (e.g. 20GiB; units KiB MiB GiB TiB or bytes). Default: unlimited. Archive first: fleet export."`
}

// retentionHelp is added to `fleet server --help`.
const retentionHelp = `
Retention: the log keeps every event for ever unless you choose otherwise. With
--retention-max-age or --retention-max-bytes the oldest events are removed once
past the limit (by the time the server stored them); the read models keep what
they folded, 'fleet inspect --at' says when it asks about a time before the log's
first event, and 'fleet export' is the archive step: run it (e.g. daily, with
--since) before anything ages out.
  fleet server --retention-max-age 8760h --retention-max-bytes 50GiB
  fleet export --since 24h > archive/$(date +%F).ndjson`

// streamConfig is the FLEET stream's configuration from the flags.
func (l ServerLimits) streamConfig(replicas int) (jsstore.Config, error) {
	c := jsstore.Config{Replicas: replicas}
	if l.RetentionMaxAge != "" {
		d, err := parseDuration(l.RetentionMaxAge)
		if err != nil || d <= 0 {
			return c, usagef("--retention-max-age %q: must be a positive duration such as 720h or 90m", l.RetentionMaxAge)
		}
		if d < jsstore.MinRetentionAge {
			return c, usagef("--retention-max-age %s: must be at least %s (agents offline longer would lose their queued events' dedup)", d, jsstore.MinRetentionAge)
		}
		c.MaxAge = d
	}
	if l.RetentionMaxBytes != "" {
		n, err := parseBytes(l.RetentionMaxBytes)
		if err != nil || n < jsstore.MinRetentionBytes {
			return c, usagef("--retention-max-bytes %q: must be a size of at least %d bytes such as 512MiB or 20GiB", l.RetentionMaxBytes, jsstore.MinRetentionBytes)
		}
		c.MaxBytes = n
	}
	return c, nil
}

// describe says the retention in words, for the start-up line.
func (l ServerLimits) describe() string {
	switch {
	case l.RetentionMaxAge == "" && l.RetentionMaxBytes == "":
		return "retention unlimited"
	case l.RetentionMaxBytes == "":
		return fmt.Sprintf("retention %s", l.RetentionMaxAge)
	case l.RetentionMaxAge == "":
		return fmt.Sprintf("retention %s", l.RetentionMaxBytes)
	}
	return fmt.Sprintf("retention %s or %s", l.RetentionMaxAge, l.RetentionMaxBytes)
}

// parseDuration is time.ParseDuration that also takes days ("30d").
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, err
		}
		return time.Duration(days * float64(24*time.Hour)), nil
	}
	return time.ParseDuration(s)
}

// parseBytes reads a size: a number with an optional unit, binary (KiB,
// MiB, GiB, TiB), decimal (KB, MB, GB, TB) or B.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("size %q: not a number", s)
	}
	mult := map[string]float64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
		"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unit %q: must be B, KiB, MiB, GiB, TiB, KB, MB, GB or TB", s, unit)
	}
	return int64(f * m), nil
}
