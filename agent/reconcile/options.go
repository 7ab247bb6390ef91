package reconcile

import "path/filepath"

// Options configure the reconcilers of an agent.
type Options struct {
	// Root is the directory file resources and unit files are placed under
	// ("/" on a device). It must exist.
	Root string
	// StateDir is where reconcilers keep their own records (exec run markers).
	StateDir string
	// AllowExec enables the exec kind; without it exec resources are refused
	// with reason ExecNotAllowed.
	AllowExec bool
	// Systemctl and Podman name the programs run for systemdUnit and
	// container resources, looked up on PATH; default "systemctl", "podman".
	Systemctl string
	Podman    string
}

// Defaults returns one reconciler per kind this build knows: file,
// systemdUnit, container and exec. With a StateDir, the file reconciler
// keeps spares in StateDir/spares (see File.KeepSpares; if that directory
// cannot be made, it writes through temp files only).
func Defaults(o Options) []Reconciler {
	f := NewFile(o.Root)
	if o.StateDir != "" {
		_ = f.KeepSpares(filepath.Join(o.StateDir, "spares"))
	}
	return []Reconciler{
		f,
		NewSystemdUnit(o.Root, o.Systemctl),
		NewContainer(o.Podman),
		NewExec(o.StateDir, o.AllowExec),
	}
}
