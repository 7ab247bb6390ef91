package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
)

// TestDeviceCredentialsLimitMessageSize connects with a device's real
// credentials: the server tells the connection its max payload is the
// stream's max message size (not the 2 MiB the control plane may send), and
// a larger message on the device's own subject is refused before it leaves.
func TestDeviceCredentialsLimitMessageSize(t *testing.T) {
	is := is.New(t)
	env := startAuth(t, t.TempDir(), t.TempDir())
	d, err := env.connect(env.credsFor("pi-01"))
	is.NoErr(err)
	defer d.nc.Close()
	is.Equal(d.nc.MaxPayload(), int64(auth.DeviceMaxPayload))
	_, err = d.js.Publish(context.Background(), events.LifecycleSubject("pi-01"), []byte(strings.Repeat("x", auth.DeviceMaxPayload+1)))
	is.True(errors.Is(err, nats.ErrMaxPayload))
}
