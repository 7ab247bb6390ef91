package auth_test

import (
	"errors"
	"testing"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
)

// FuzzParseCreds: any credentials file is a device's (with a valid id), some
// other user's, or refused with ErrInvalid; never a panic.
//
//	go test -run '^$' -fuzz FuzzParseCreds -fuzztime 30s ./events/auth/
func FuzzParseCreds(f *testing.F) {
	a, err := auth.Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	creds, _, err := a.AddDevice("pi-01")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(creds)
	f.Add(creds[:len(creds)/2])
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nxx.yy.zz\n------END NATS USER JWT------\n"))
	f.Add([]byte("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.AAAA"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok, err := auth.ParseCredsDevice(b)
		if err != nil {
			if !errors.Is(err, events.ErrInvalid) {
				t.Fatalf("refusal does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if ok && !events.ValidID(id) {
			t.Fatalf("device id %q accepted from credentials", id)
		}
	})
}
