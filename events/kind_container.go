package events

import (
	"fmt"
	"strings"
)

// ContainerSpec is a podman container.
type ContainerSpec struct {
	Name    string            `json:"name,omitempty"` // default fleet-<resource id>
	Image   string            `json:"image"`
	Command []string          `json:"command,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Ports   []string          `json:"ports,omitempty"`   // host:container[/proto]
	Volumes []string          `json:"volumes,omitempty"` // /host:/container[:ro]
	Restart string            `json:"restart,omitempty"` // no, always, on-failure, unless-stopped
	Health  *HealthSpec       `json:"health,omitempty"`  // probes and restart backoff (health.go)
}

// KindContainer is the manifest key of a container resource.
const KindContainer = "container"

var containerKind = declare(kindSpec[ContainerSpec]{
	name:     KindContainer,
	field:    func(r *Resource) **ContainerSpec { return &r.Container },
	validate: validateContainer,
	fast: func(b []byte, i int, x *ContainerSpec) (int, bool) {
		s := scan{b: b, i: i}
		ok := s.containerSpec(x)
		return s.i, ok
	},
	same: func(x, y *ContainerSpec) bool {
		return x.Name == y.Name && x.Image == y.Image && x.Restart == y.Restart &&
			sameStrings(x.Command, y.Command) && sameStrings(x.Ports, y.Ports) && sameStrings(x.Volumes, y.Volumes) &&
			sameEnv(x.Env, y.Env) && samePtr(x.Health, y.Health, sameHealth)
	},
	health: func(x *ContainerSpec) **HealthSpec { return &x.Health },
	sample: func(id string, version int) *ContainerSpec {
		return &ContainerSpec{Image: fmt.Sprintf("registry.local/app:%d", version)}
	},
})

// ContainerName returns the podman name of a container resource.
func (r Resource) ContainerName() string {
	if r.Container != nil && r.Container.Name != "" {
		return r.Container.Name
	}
	return "fleet-" + r.ID
}

// validateContainer: an image reference, a podman name, a restart policy,
// shell variable names, port and volume mappings.
func validateContainer(x *ContainerSpec, c *specCheck) {
	if !imagePattern.MatchString(x.Image) {
		c.bad("container.image", "%q must be an image reference such as nginx:1.27", x.Image)
	}
	if x.Name != "" && !containerName.MatchString(x.Name) {
		c.bad("container.name", "%q must be letters, digits, '_', '.', '-'", x.Name)
	}
	if !restartPolicies[x.Restart] {
		c.bad("container.restart", "%q must be no, always, on-failure or unless-stopped", x.Restart)
	}
	for k := range x.Env {
		if !envKeyPattern.MatchString(k) {
			c.bad("container.env", "key %q must be a shell variable name", k)
		}
	}
	for j, p := range x.Ports {
		if !portPattern.MatchString(p) {
			c.bad(fmt.Sprintf("container.ports[%d]", j), "%q must be host:container[/tcp|udp]", p)
		}
	}
	for j, v := range x.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || checkPath(parts[0]) != "" || checkPath(parts[1]) != "" {
			c.bad(fmt.Sprintf("container.volumes[%d]", j), "%q must be /host/path:/container/path[:ro]", v)
		}
	}
}

func (s *scan) containerSpec(c *ContainerSpec) bool {
	return s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "name":
			c.Name, ok = s.text()
		case "image":
			c.Image, ok = s.text()
		case "command":
			c.Command, ok = s.texts()
		case "ports":
			c.Ports, ok = s.texts()
		case "volumes":
			c.Volumes, ok = s.texts()
		case "restart":
			c.Restart, ok = s.text()
		case "health":
			c.Health, ok = s.health()
		case "env":
			c.Env = map[string]string{}
			ok = s.object(func(key []byte) bool {
				v, ok := s.text()
				c.Env[string(key)] = v
				return ok
			})
		}
		return ok
	})
}
