package reconcile

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
// systemdUnit, container and exec. (The agent then has the file reconciler
// keep spares in its state directory: File.KeepSpares.)
func Defaults(o Options) []Reconciler {
	return []Reconciler{
		NewFile(o.Root),
		NewSystemdUnit(o.Root, o.Systemctl),
		NewContainer(o.Podman),
		NewExec(o.StateDir, o.AllowExec),
	}
}
