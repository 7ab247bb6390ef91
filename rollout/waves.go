package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// WaveRule is the grammar of --waves, quoted in errors.
const WaveRule = "comma-separated cumulative sizes, each a count of devices (5) or a percent of the matching devices (25%), " +
	"not decreasing, the last 100%"

// ParseWaves checks a wave list such as 1,10%,50%,100%.
func ParseWaves(ws []string) error {
	if len(ws) == 0 {
		return fmt.Errorf("%w: waves: none given: must be %s", events.ErrInvalid, WaveRule)
	}
	if len(ws) > 100 {
		return fmt.Errorf("%w: waves: %d given: at most 100", events.ErrInvalid, len(ws))
	}
	lastPct := -1.0
	for i, w := range ws {
		if p, ok := strings.CutSuffix(w, "%"); ok {
			f, err := strconv.ParseFloat(p, 64)
			if err != nil || f <= 0 || f > 100 || math.IsNaN(f) {
				return fmt.Errorf("%w: wave %d %q: a percent must be more than 0 and at most 100; waves must be %s", events.ErrInvalid, i+1, w, WaveRule)
			}
			if f < lastPct {
				return fmt.Errorf("%w: wave %d %q: smaller than the wave before; waves must be %s", events.ErrInvalid, i+1, w, WaveRule)
			}
			lastPct = f
			continue
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return fmt.Errorf("%w: wave %d %q: a count must be a whole number of at least 1; waves must be %s", events.ErrInvalid, i+1, w, WaveRule)
		}
	}
	if ws[len(ws)-1] != "100%" {
		return fmt.Errorf("%w: waves: the last is %q: must be 100%% so that every matching device is reached; waves must be %s", events.ErrInvalid, ws[len(ws)-1], WaveRule)
	}
	return nil
}

// Position is a device's place in a rollout: the first 8 bytes of
// sha256(rollout id, NUL, device id), so it depends on nothing but the two
// ids and replaying the log gives the same order.
func Position(rolloutID, device string) uint64 {
	h := sha256.Sum256([]byte(rolloutID + "\x00" + device))
	return binary.BigEndian.Uint64(h[:8])
}

// Order returns devices sorted by Position (ties by id).
func Order(rolloutID string, devices []string) []string {
	out := append([]string(nil), devices...)
	sort.Slice(out, func(i, j int) bool {
		pi, pj := Position(rolloutID, out[i]), Position(rolloutID, out[j])
		if pi != pj {
			return pi < pj
		}
		return out[i] < out[j]
	})
	return out
}

// Plan splits the devices matching when the rollout started into waves:
// in Order, wave i holds the devices from the bound of wave i-1 up to its
// own bound, a wave's bound being its count, or ceil(percent × devices /
// 100), never less than the bound before and never more than the devices.
// A wave may be empty (its bound is the one before); it passes at once.
// ws must pass ParseWaves.
func Plan(rolloutID string, devices []string, ws []string) [][]string {
	order := Order(rolloutID, devices)
	n := len(order)
	out := make([][]string, len(ws))
	prev := 0
	for i, w := range ws {
		bound := prev
		if p, ok := strings.CutSuffix(w, "%"); ok {
			f, _ := strconv.ParseFloat(p, 64)
			bound = int(math.Ceil(f * float64(n) / 100))
		} else {
			c, _ := strconv.Atoi(w)
			bound = c
		}
		bound = min(max(bound, prev), n)
		out[i] = append([]string{}, order[prev:bound]...)
		prev = bound
	}
	return out
}

// JoinWave is the wave a device joins that starts to match the selector
// only after the rollout started (a new device, or new labels): the wave
// in progress when the controller first sees it match, never one that
// already passed; current is that wave's index. Before the first wave it
// is the first.
func JoinWave(current int) int { return max(current, 0) }
