package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
)

// AccountState is what an account JWT says about the devices: when it was
// issued and how many user keys it revokes (revocations and suspensions).
type AccountState struct {
	IssuedAt    time.Time `json:"issuedAt"`
	Revocations int       `json:"revocations"`
}

func (s AccountState) String() string {
	return fmt.Sprintf("issued %s, %d revoked key(s)", s.IssuedAt.UTC().Format(time.RFC3339), s.Revocations)
}

// afterLastIssue waits, if need be, until the second after the one the
// current account JWT was issued in, so that every account JWT is issued
// in a later second than the one before. JWT issue times have a second's
// granularity, and a JWT's id (jti) hashes only its generic claims (issuer,
// subject, name, issue time), so two account JWTs signed in one second
// have the same id: a full resolver (DirAccResolver's saveIfNewer, the one
// a site keeps the hub's decisions in) keeps the first and drops the second
// as the same JWT, and "the newest" of the two could not be told. Costs at
// most a second per change, only for changes in quick succession.
func (a *Authority) afterLastIssue() {
	tok, err := a.AccountJWT()
	if err != nil {
		return // the first one
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return
	}
	if next := time.Unix(ac.IssuedAt+1, 0); time.Now().Before(next) {
		time.Sleep(time.Until(next))
	}
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
	return AccountState{IssuedAt: time.Unix(ac.IssuedAt, 0).UTC(), Revocations: len(ac.Revocations)}, nil
}

// NewestAccountJWT returns the newest (by issue time) of toks that is the
// FLEET account's JWT signed by the operator, and its state; ok is false
// when none is. Every change of the revocation list (RevokeDevice,
// SuspendDevice, ReinstateDevice) signs a new JWT in a later second
// (afterLastIssue), so the newest is the latest decision; a full resolver
// keeps the newer of two JWTs the same way (saveIfNewer).
func (a *Authority) NewestAccountJWT(toks []string) (tok string, st AccountState, ok bool) {
	var best int64
	for _, t := range toks {
		ac, err := a.CheckAccountJWT(t)
		if err != nil {
			continue
		}
		if !ok || ac.IssuedAt > best {
			tok, best, ok = strings.TrimSpace(t), ac.IssuedAt, true
			st = AccountState{IssuedAt: time.Unix(ac.IssuedAt, 0).UTC(), Revocations: len(ac.Revocations)}
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
