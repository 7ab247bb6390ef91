package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// AccountState is what an account JWT says about the devices: when it was
// issued, its revision (see nextRevision) and how many user keys it revokes
// (revocations and suspensions).
type AccountState struct {
	IssuedAt    time.Time `json:"issuedAt"`
	Revision    uint64    `json:"revision"`
	Revocations int       `json:"revocations"`
}

func (s AccountState) String() string {
	return fmt.Sprintf("issued %s, revision %d, %d revoked key(s)", s.IssuedAt.UTC().Format(time.RFC3339), s.Revision, s.Revocations)
}

// NewerThan reports whether s is a later decision than o: issued in a later
// second, or in the same second with a higher revision. The issue time
// comes first, as in a full resolver (DirAccResolver's saveIfNewer refuses
// a JWT issued before the one it has).
func (s AccountState) NewerThan(o AccountState) bool {
	if !s.IssuedAt.Equal(o.IssuedAt) {
		return s.IssuedAt.After(o.IssuedAt)
	}
	return s.Revision > o.Revision
}

// revisionAudience prefixes the revision in an account JWT's audience.
const revisionAudience = "fleet-revision:"

// nextRevision gives ac the revision after the one it has (its audience
// names it; none is 0), so that two account JWTs signed in one second
// differ. JWT issue times have a second's granularity and a JWT's id (jti)
// is the hash of its generic claims only (audience, expiry, issue time,
// issuer, name, not-before, subject: jwt.ClaimsData), not of the
// revocations: without it, the JWTs of a suspension and a reinstatement in
// one second have the same id, and a full resolver (DirAccResolver's
// saveIfNewer, the one a site keeps the hub's decisions in) keeps the first
// and drops the second as the same JWT. nats-server checks no account
// JWT's audience. The revision also orders two JWTs of one second
// (AccountState.NewerThan), with no wait for the next second: the rate
// guard suspends a flooding device at once.
func nextRevision(ac *jwt.AccountClaims) {
	ac.Audience = revisionAudience + strconv.FormatUint(revisionOf(ac)+1, 10)
}

// revisionOf is ac's revision; 0 for a JWT of before revisions.
func revisionOf(ac *jwt.AccountClaims) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(ac.Audience, revisionAudience), 10, 64)
	return n
}

func stateOf(ac *jwt.AccountClaims) AccountState {
	return AccountState{IssuedAt: time.Unix(ac.IssuedAt, 0).UTC(), Revision: revisionOf(ac), Revocations: len(ac.Revocations)}
}

// OperatorPublicKey is the operator's public key.
func (a *Authority) OperatorPublicKey() string {
	pub, _ := a.operator.PublicKey()
	return pub
}

// SystemAccountPublicKey is the system account's public key.
func (a *Authority) SystemAccountPublicKey() string { return a.sysPub }

// CheckAccountJWT decodes tok and checks that it is the FLEET account's JWT
// signed by this authority's operator (jwt.DecodeAccountClaims checks the
// signature); anything else is refused with what is wrong.
func (a *Authority) CheckAccountJWT(tok string) (*jwt.AccountClaims, error) {
	ac, err := jwt.DecodeAccountClaims(strings.TrimSpace(tok))
	if err != nil {
		return nil, fmt.Errorf("account jwt: %w", err)
	}
	if ac.Subject != a.accPub {
		return nil, fmt.Errorf("account jwt: subject %s: not the FLEET account %s", short(ac.Subject), short(a.accPub))
	}
	if ac.Issuer != a.OperatorPublicKey() {
		return nil, fmt.Errorf("account jwt: issuer %s: not this operator %s", short(ac.Issuer), short(a.OperatorPublicKey()))
	}
	return ac, nil
}

// StateOf is the AccountState of the FLEET account JWT tok.
func (a *Authority) StateOf(tok string) (AccountState, error) {
	ac, err := a.CheckAccountJWT(tok)
	if err != nil {
		return AccountState{}, err
	}
	return stateOf(ac), nil
}

// NewestAccountJWT returns the newest (AccountState.NewerThan) of toks that
// is the FLEET account's JWT signed by the operator, and its state; ok is
// false when none is. Every change of the revocation list (RevokeDevice,
// SuspendDevice, ReinstateDevice) signs a new JWT with the next revision
// (nextRevision), so the newest is the latest decision.
func (a *Authority) NewestAccountJWT(toks []string) (tok string, st AccountState, ok bool) {
	for _, t := range toks {
		ac, err := a.CheckAccountJWT(t)
		if err != nil {
			continue
		}
		if s := stateOf(ac); !ok || s.NewerThan(st) {
			tok, st, ok = strings.TrimSpace(t), s, true
		}
	}
	return tok, st, ok
}

// ServerAccountJWT is the account JWT one server runs with, as it answers
// $SYS.REQ.ACCOUNT.<account>.INFO.
type ServerAccountJWT struct {
	Server string
	Domain string // the server's JetStream domain
	JWT    string
}

// AccountJWTsOf asks every server reachable over the system account (nc
// must use SystemCredsPath: the servers of a cluster through its routes, a
// hub through a site's system-account leaf connection) for the FLEET
// account's JWT it runs with ($SYS.REQ.ACCOUNT.<account>.INFO, which every
// nats-server answers whatever its resolver) and returns the answers that
// came within wait.
func (a *Authority) AccountJWTsOf(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]ServerAccountJWT, error) {
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, fmt.Errorf("account info: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("account info: %w", err)
	}
	if err := nc.PublishRequest("$SYS.REQ.ACCOUNT."+a.accPub+".INFO", inbox, nil); err != nil {
		return nil, fmt.Errorf("account info: %w", err)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	var out []ServerAccountJWT
	for {
		select {
		case <-ctx.Done():
			return out, nil
		case <-t.C:
			return out, nil
		case m := <-ch:
			var resp struct {
				Server struct {
					Name   string `json:"name"`
					Domain string `json:"domain"`
				} `json:"server"`
				Data struct {
					JWT string `json:"jwt"`
				} `json:"data"`
			}
			if json.Unmarshal(m.Data, &resp) == nil && resp.Data.JWT != "" {
				out = append(out, ServerAccountJWT{Server: resp.Server.Name, Domain: resp.Server.Domain, JWT: resp.Data.JWT})
			}
		}
	}
}
