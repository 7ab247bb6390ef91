package events

// The fast decoder and comparison of a health spec, used by the kinds that
// take one (kind_container.go, kind_systemd.go). Like the kinds' decoders,
// it gives up (false) on anything the standard decoder would treat
// differently: unknown or case-folded keys, nulls, non-integers.

func (s *scan) health() (*HealthSpec, bool) {
	h := &HealthSpec{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "readiness":
			h.Readiness, ok = s.probe()
		case "liveness":
			h.Liveness, ok = s.probe()
		case "startup":
			h.Startup, ok = s.probe()
		case "restartBackoff":
			h.RestartBackoff = &RestartBackoff{}
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "initial":
					h.RestartBackoff.Initial, ok = s.text()
				case "max":
					h.RestartBackoff.Max, ok = s.text()
				case "resetAfter":
					h.RestartBackoff.ResetAfter, ok = s.text()
				}
				return ok
			})
		}
		return ok
	})
	return h, ok
}

func (s *scan) probe() (*Probe, bool) {
	p := &Probe{}
	ok := s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "exec":
			p.Exec = &ExecProbe{}
			ok = s.object(func(key []byte) bool {
				if string(key) != "argv" {
					return false
				}
				var ok bool
				p.Exec.Argv, ok = s.texts()
				return ok
			})
		case "http":
			p.HTTP = &HTTPProbe{}
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "url":
					p.HTTP.URL, ok = s.text()
				case "status":
					p.HTTP.Status, ok = s.text()
				}
				return ok
			})
		case "tcp":
			p.TCP = &TCPProbe{}
			ok = s.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "host":
					p.TCP.Host, ok = s.text()
				case "port":
					p.TCP.Port, ok = s.intN()
				}
				return ok
			})
		case "initialDelay":
			p.InitialDelay, ok = s.text()
		case "period":
			p.Period, ok = s.text()
		case "timeout":
			p.Timeout, ok = s.text()
		case "successThreshold":
			p.SuccessThreshold, ok = s.intN()
		case "failureThreshold":
			p.FailureThreshold, ok = s.intN()
		}
		return ok
	})
	return p, ok
}

// sameHealth reports whether two health specs are equal as
// reflect.DeepEqual says (nil and empty apart).
func sameHealth(x, y *HealthSpec) bool {
	return samePtr(x.Readiness, y.Readiness, sameProbe) && samePtr(x.Liveness, y.Liveness, sameProbe) &&
		samePtr(x.Startup, y.Startup, sameProbe) &&
		samePtr(x.RestartBackoff, y.RestartBackoff, func(a, b *RestartBackoff) bool { return *a == *b })
}

func sameProbe(x, y *Probe) bool {
	return x.InitialDelay == y.InitialDelay && x.Period == y.Period && x.Timeout == y.Timeout &&
		x.SuccessThreshold == y.SuccessThreshold && x.FailureThreshold == y.FailureThreshold &&
		samePtr(x.Exec, y.Exec, func(a, b *ExecProbe) bool { return sameStrings(a.Argv, b.Argv) }) &&
		samePtr(x.HTTP, y.HTTP, func(a, b *HTTPProbe) bool { return *a == *b }) &&
		samePtr(x.TCP, y.TCP, func(a, b *TCPProbe) bool { return *a == *b })
}
