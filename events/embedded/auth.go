package embedded

import (
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/fleet-dev/fleet/events/auth"
)

// WithAuth returns an Options.Configure that turns decentralized auth on:
// the server trusts a's operator, knows its system account, and resolves
// accounts from memory, preloaded with a's account JWTs (with their current
// revocations). Later revocations reach the running server with auth.Push.
func WithAuth(a *auth.Authority) (func(*server.Options), error) {
	op, sysPub, preload, err := a.ServerConfig()
	if err != nil {
		return nil, err
	}
	res := &server.MemAccResolver{}
	for pub, tok := range preload {
		if err := res.Store(pub, tok); err != nil {
			return nil, err
		}
	}
	return func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op}
		o.AccountResolver = res
		o.SystemAccount = sysPub
	}, nil
}
