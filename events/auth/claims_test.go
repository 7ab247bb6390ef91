package auth

import (
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// TestAccountJWTsOfOneSecondDifferAndAreOrdered: revoke, suspend and
// reinstate in quick succession (most likely in one second: no change waits
// for the next) give account JWTs of distinct ids and increasing revisions,
// so the newest is the latest decision, and a real full resolver (the one a
// site keeps the hub's decisions in) stores each in turn: with the same id
// (the jti hashes the generic claims only) it would keep the first.
func TestAccountJWTsOfOneSecondDifferAndAreOrdered(t *testing.T) {
	is := is.New(t)
	a, err := Open(t.TempDir())
	is.NoErr(err)
	for _, id := range []string{"pi-1", "pi-2"} {
		_, _, err := a.AddDevice(id)
		is.NoErr(err)
	}
	res, err := server.NewDirAccResolver(t.TempDir(), 0, time.Minute, server.NoDelete)
	is.NoErr(err)
	defer res.Close()
	first, err := a.AccountJWT()
	is.NoErr(err)
	is.NoErr(res.Store(a.AccountPublicKey(), first))
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
			is.True(ac.ID != prev.ID)
			is.True(stateOf(ac).NewerThan(stateOf(prev)))
			is.True(!stateOf(prev).NewerThan(stateOf(ac)))
			is.NoErr(res.Store(a.AccountPublicKey(), tok))
			kept, err := res.LoadAcc(a.AccountPublicKey())
			is.NoErr(err)
			is.Equal(kept, tok) // the resolver took it
		}
		prev = ac
	}
	// the newest, whatever the order the answers came in
	tok, st, ok := a.NewestAccountJWT([]string{t2, t3, first, t1})
	is.True(ok)
	is.Equal(tok, t3)
	is.Equal(st.Revocations, 1) // pi-1's key; pi-2 reinstated
	is.Equal(st.Revision, uint64(4))
	want, err := a.StateOf(t3)
	is.NoErr(err)
	is.Equal(st, want)
}

// TestAccountStateNewerThan: a later second wins whatever the revisions (a
// JWT of before revisions has revision 0); in one second, the higher
// revision.
func TestAccountStateNewerThan(t *testing.T) {
	is := is.New(t)
	s := time.Unix(1700000000, 0).UTC()
	is.True(AccountState{IssuedAt: s.Add(time.Second)}.NewerThan(AccountState{IssuedAt: s, Revision: 9}))
	is.True(!AccountState{IssuedAt: s, Revision: 9}.NewerThan(AccountState{IssuedAt: s.Add(time.Second)}))
	is.True(AccountState{IssuedAt: s, Revision: 2}.NewerThan(AccountState{IssuedAt: s, Revision: 1}))
	is.True(!AccountState{IssuedAt: s, Revision: 1}.NewerThan(AccountState{IssuedAt: s, Revision: 1}))
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
	_, _, err = other.AddDevice("pi-1")
	is.NoErr(err)
	theirs, _, err := other.RevokeDevice("pi-1") // newer than mine: a later revision
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
