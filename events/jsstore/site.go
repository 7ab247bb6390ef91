package jsstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleet-dev/fleet/events"
)

// A site is a leaf node with a JetStream domain of its own (fleet site).
// Its agents see a stream named FLEET, as at the hub, and the two FLEETs
// are tied with JetStream sources only:
//
//   - the site's FLEET takes the agents' own subjects (lifecycle, attempt,
//     status, drift) and sources the site's devices' manifests from the
//     hub's FLEET (its manifest subjects only);
//   - the hub's FLEET sources the site's FLEET filtered on the agents'
//     subjects, never the manifests it sent there, so nothing loops.
//
// Each source remembers how far it got, so after an outage the hub takes
// what the site stored meanwhile once, in the site's order, and the site
// takes the manifests applied at the hub meanwhile.

// agentKinds are the subject kinds an agent writes (DESIGN.md, The log).
var agentKinds = []string{events.KindLifecycle, events.KindAttempt + ".*", events.KindStatus + ".*", events.KindDrift + ".*"}

// AgentSubjects are the subjects of the agents' events of devices (every
// device when devices is empty).
func AgentSubjects(devices []string) []string {
	if len(devices) == 0 {
		devices = []string{"*"}
	}
	var out []string
	for _, d := range devices {
		for _, k := range agentKinds {
			out = append(out, events.Prefix+"."+d+"."+k)
		}
	}
	return out
}

// manifestSubjects are the manifest subjects of devices (every device when
// devices is empty).
func manifestSubjects(devices []string) []string {
	if len(devices) == 0 {
		return []string{events.ManifestSubject("*")}
	}
	var out []string
	for _, d := range devices {
		out = append(out, events.ManifestSubject(d))
	}
	return out
}

// filters is a source filtered on subjects, unchanged (an empty
// destination is no transform).
func filters(subjects []string) []jetstream.SubjectTransformConfig {
	var out []jetstream.SubjectTransformConfig
	for _, s := range subjects {
		out = append(out, jetstream.SubjectTransformConfig{Source: s})
	}
	return out
}

// SiteStreamConfig is the FLEET stream of a site: the agents' subjects of
// devices (every device when empty), stored at the site, and the hub's
// manifests for them, sourced from FLEET in hubDomain.
func SiteStreamConfig(c Config, hubDomain string, devices []string) jetstream.StreamConfig {
	cfg := StreamConfig(c)
	cfg.Description = "fleet site: the site's devices' events, and their manifests from the hub"
	cfg.Subjects = AgentSubjects(devices)
	cfg.Sources = []*jetstream.StreamSource{{Name: events.Stream, SubjectTransforms: filters(manifestSubjects(devices)),
		External: &jetstream.ExternalStream{APIPrefix: "$JS." + hubDomain + ".API"}}}
	return cfg
}

// HubSource is the source the hub's FLEET takes a site's events through:
// the site's FLEET in siteDomain, its agents' subjects only.
func HubSource(siteDomain string, devices []string) *jetstream.StreamSource {
	return &jetstream.StreamSource{Name: events.Stream, SubjectTransforms: filters(AgentSubjects(devices)),
		External: &jetstream.ExternalStream{APIPrefix: "$JS." + siteDomain + ".API"}}
}

// OpenSite creates or updates the site's FLEET (SiteStreamConfig) through
// js, the site's own JetStream.
func OpenSite(ctx context.Context, js jetstream.JetStream, c Config, hubDomain string, devices []string) (*Store, error) {
	want := SiteStreamConfig(c, hubDomain, devices)
	s, err := retrying(ctx, func(ctx context.Context) (jetstream.Stream, error) { return js.CreateOrUpdateStream(ctx, want) })
	if err != nil {
		return nil, fmt.Errorf("site stream %s: %w", events.Stream, unavailable(err))
	}
	return &Store{js: js, stream: s}, nil
}

// EnsureHubSource adds src to the hub's FLEET (hub: the hub's JetStream)
// unless a source from the same place is there already, where it is
// replaced if its filters differ. Other sources are kept; an update that
// raced another one is detected by reading the config back and done
// again.
func EnsureHubSource(ctx context.Context, hub jetstream.JetStream, src *jetstream.StreamSource) error {
	for {
		s, err := hub.Stream(ctx, events.Stream)
		if err != nil {
			return fmt.Errorf("hub stream %s: %w", events.Stream, unavailable(err))
		}
		cfg := s.CachedInfo().Config
		i := slices.IndexFunc(cfg.Sources, func(x *jetstream.StreamSource) bool { return sameOrigin(x, src) })
		if i >= 0 && slices.Equal(cfg.Sources[i].SubjectTransforms, src.SubjectTransforms) {
			return nil
		}
		if i >= 0 {
			cfg.Sources[i] = src
		} else {
			cfg.Sources = append(cfg.Sources, src)
		}
		if _, err := hub.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("add the site's source to the hub's %s: %w", events.Stream, unavailable(err))
		}
		// read back: another site's update at the same moment may have replaced ours
	}
}

func sameOrigin(a, b *jetstream.StreamSource) bool {
	pa, pb := "", ""
	if a.External != nil {
		pa = a.External.APIPrefix
	}
	if b.External != nil {
		pb = b.External.APIPrefix
	}
	return a.Name == b.Name && pa == pb
}
