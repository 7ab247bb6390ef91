package events

import "time"

// Fast decoders for the payloads of the agent's frequent events.

func (s *scan) status() (*StatusChanged, bool) {
	p := &StatusChanged{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "from":
			p.From, ok = s.text()
		case "to":
			p.To, ok = s.text()
		case "trigger":
			p.Trigger, ok = s.text()
		case "reason":
			p.Reason, ok = s.text()
		case "error":
			p.Error, ok = s.text()
		case "attempts":
			p.Attempts, ok = s.intN()
		case "retryAfter":
			var t time.Time
			if t, ok = s.time(); ok {
				p.RetryAfter = &t
			}
		case "probe":
			p.Probe, ok = s.text()
		case "failures":
			p.Failures, ok = s.intN()
		case "restarts":
			p.Restarts, ok = s.intN()
		case "nextRestart":
			var t time.Time
			if t, ok = s.time(); ok {
				p.NextRestart = &t
			}
		}
		return ok
	})
	return p, ok
}

func (s *scan) attempt() (*ReconcileAttempted, bool) {
	p := &ReconcileAttempted{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "attempt":
			p.Attempt, ok = s.intN()
		case "trigger":
			p.Trigger, ok = s.text()
		case "durationNs":
			var n int64
			n, ok = s.int()
			p.Duration = time.Duration(n)
		case "outcome":
			p.Outcome, ok = s.text()
		case "error":
			p.Error, ok = s.text()
		case "changed":
			p.Changed, ok = s.bool()
		case "output":
			p.Output, ok = s.text()
		case "exitCode":
			var x int
			if x, ok = s.intN(); ok {
				p.ExitCode = &x
			}
		case "specDigest":
			p.SpecDigest, ok = s.text()
		}
		return ok
	})
	return p, ok
}

func (s *scan) drift() (*DriftDetected, bool) {
	p := &DriftDetected{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "kind":
			p.Kind, ok = s.text()
		case "policy":
			p.Policy, ok = s.text()
		case "source":
			p.Source, ok = s.text()
		case "differences":
			if !s.tok('[') {
				return false
			}
			p.Differences = []Difference{}
			if s.tok(']') {
				return true
			}
			for {
				var d Difference
				if !s.object(func(key []byte) bool {
					var ok bool
					switch string(key) {
					case "field":
						d.Field, ok = s.text()
					case "expected":
						d.Expected, ok = s.text()
					case "observed":
						d.Observed, ok = s.text()
					}
					return ok
				}) {
					return false
				}
				p.Differences = append(p.Differences, d)
				if s.tok(']') {
					return true
				}
				if !s.tok(',') {
					return false
				}
			}
		}
		return ok
	})
	return p, ok
}
