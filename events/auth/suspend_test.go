package auth

import (
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/jwt/v2"

	"github.com/fleet-dev/fleet/events"
)

// TestSuspendAndReinstateRevokeAndLiftTheSameKey: a suspension puts the
// device's current key on the account JWT's revocations and records until
// when; reinstating removes it again (the same credentials work); a revoked
// device can be neither suspended nor reinstated.
func TestSuspendAndReinstateRevokeAndLiftTheSameKey(t *testing.T) {
	is := is.New(t)
	a, err := Open(t.TempDir())
	is.NoErr(err)
	_, d, err := a.AddDevice("pi-1")
	is.NoErr(err)
	until := time.Now().Add(time.Minute)
	tok, s, err := a.SuspendDevice("pi-1", until, "test")
	is.NoErr(err)
	ac, err := jwt.DecodeAccountClaims(tok)
	is.NoErr(err)
	is.True(ac.IsClaimRevoked(&jwt.UserClaims{ClaimsData: jwt.ClaimsData{Subject: d.UserKey, IssuedAt: d.IssuedAt.Unix()}}))
	is.True(s.Suspended(time.Now()))
	is.Equal(s.Suspensions, 1)

	tok, r, err := a.ReinstateDevice("pi-1")
	is.NoErr(err)
	ac, err = jwt.DecodeAccountClaims(tok)
	is.NoErr(err)
	_, still := ac.Revocations[d.UserKey]
	is.True(!still)
	is.True(r.SuspendedUntil == nil)
	is.Equal(r.Suspensions, 1) // the offence is remembered: the next one is longer

	_, _, err = a.RevokeDevice("pi-1")
	is.NoErr(err)
	_, _, err = a.SuspendDevice("pi-1", until, "test")
	is.True(errors.Is(err, events.ErrInvalid))
	_, _, err = a.ReinstateDevice("pi-1")
	is.True(errors.Is(err, events.ErrInvalid))
}
