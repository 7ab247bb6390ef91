package projections

import (
	"bytes"
	"slices"

	"github.com/fleet-dev/fleet/events"
)

// sameResource reports whether a and b are equal as reflect.DeepEqual
// would say (every field; nil and empty apart), without reflection: the
// fold compares every resource of every manifest with the last one's.
// TestSameResourceIsDeepEqual pins it to reflect.DeepEqual and fails when
// a field is added to events.Resource or a spec without being compared
// here.
func sameResource(a, b *events.Resource) bool {
	return a.ID == b.ID && a.DriftPolicy == b.DriftPolicy && a.Kind == b.Kind && a.Problem == b.Problem &&
		sameBytes(a.Raw, b.Raw) &&
		samePtr(a.File, b.File, func(x, y *events.FileSpec) bool { return *x == *y }) &&
		samePtr(a.SystemdUnit, b.SystemdUnit, func(x, y *events.SystemdUnitSpec) bool {
			return x.Name == y.Name && x.Content == y.Content &&
				samePtr(x.Enabled, y.Enabled, sameBool) && samePtr(x.Active, y.Active, sameBool)
		}) &&
		samePtr(a.Container, b.Container, func(x, y *events.ContainerSpec) bool {
			return x.Name == y.Name && x.Image == y.Image && x.Restart == y.Restart &&
				sameStrings(x.Command, y.Command) && sameStrings(x.Ports, y.Ports) && sameStrings(x.Volumes, y.Volumes) &&
				sameEnv(x.Env, y.Env)
		}) &&
		samePtr(a.Exec, b.Exec, func(x, y *events.ExecSpec) bool {
			return x.Timeout == y.Timeout && sameStrings(x.Argv, y.Argv)
		})
}

func samePtr[T any](x, y *T, same func(x, y *T) bool) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x == y || same(x, y)
}

func sameBool(x, y *bool) bool { return *x == *y }

func sameStrings(x, y []string) bool { return (x == nil) == (y == nil) && slices.Equal(x, y) }

func sameBytes(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }

func sameEnv(x, y map[string]string) bool {
	if (x == nil) != (y == nil) || len(x) != len(y) {
		return false
	}
	for k, v := range x {
		if w, ok := y[k]; !ok || w != v {
			return false
		}
	}
	return true
}
