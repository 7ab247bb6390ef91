package auth

import (
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/jwt/v2"
)

// TestAccountJWTsAreIssuedInLaterSeconds: revoke, suspend and reinstate in
// quick succession give account JWTs of strictly later issue times and
// distinct ids (two JWTs of one second share a jti: a full resolver would
// keep the first), so the newest is the latest decision.
func TestAccountJWTsAreIssuedInLaterSeconds(t *testing.T) {
	is := is.New(t)
	a, err := Open(t.TempDir())
	is.NoErr(err)
	for _, id := range []string{"pi-1", "pi-2"} {
		_, _, err := a.AddDevice(id)
		is.NoErr(err)
	}
	first, err := a.AccountJWT()
	is.NoErr(err)
	t1, _, err := a.RevokeDevice("pi-1")
	is.NoErr(err)
	t2, _, err := a.SuspendDevice("pi-2", time.Now().Add(time.Hour), "test")
	is.NoErr(err)
	t3, _, err := a.ReinstateDevice("pi-2")
	is.NoErr(err)
	var prev *jwt.AccountClaims
	for _, tok := range []string{first, t1, t2, t3} {
		ac, err := a.CheckAccountJWT(tok)
		is.NoErr(err)
		if prev != nil {
			is.True(ac.IssuedAt > prev.IssuedAt)
			is.True(ac.ID != prev.ID)
		}
		prev = ac
	}
	// the newest, whatever the order the answers came in
	tok, st, ok := a.NewestAccountJWT([]string{t2, t3, first, t1})
	is.True(ok)
	is.Equal(tok, t3)
	is.Equal(st.Revocations, 1) // pi-1's key; pi-2 reinstated
	want, err := a.StateOf(t3)
	is.NoErr(err)
	is.Equal(st, want)
}

// TestNewestAccountJWTTakesOnlyThisOperatorsFleetAccount: a JWT of another
// account, one signed by another operator, and garbage are not taken,
// however new.
func TestNewestAccountJWTTakesOnlyThisOperatorsFleetAccount(t *testing.T) {
	is := is.New(t)
	a, err := Open(t.TempDir())
	is.NoErr(err)
	other, err := Open(t.TempDir()) // another operator, another FLEET account
	is.NoErr(err)
	mine, err := a.AccountJWT()
	is.NoErr(err)
	time.Sleep(1100 * time.Millisecond) // the others are newer
	_, _, err = other.AddDevice("pi-1")
	is.NoErr(err)
	theirs, _, err := other.RevokeDevice("pi-1")
	is.NoErr(err)
	_, _, pre, err := a.ServerConfig()
	is.NoErr(err)
	sys := pre[a.SystemAccountPublicKey()] // this operator's, but the system account

	_, err = a.CheckAccountJWT(theirs)
	is.True(err != nil)
	_, err = a.CheckAccountJWT(sys)
	is.True(err != nil)
	tok, _, ok := a.NewestAccountJWT([]string{theirs, sys, "not a jwt", mine})
	is.True(ok)
	is.Equal(tok, mine)
	_, _, ok = a.NewestAccountJWT([]string{theirs, "not a jwt"})
	is.True(!ok)
}
