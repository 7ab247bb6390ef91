package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/fleet-dev/fleet/events/auth"
)

// How a site with --auth keeps the hub's revocations.
//
// Live: the site's server has a second leaf connection, binding its system
// account to the hub's (with DIR/sys-user.creds). Every account JWT update
// pushed at the hub ($SYS.REQ.ACCOUNT.<account>.CLAIMS.UPDATE, by 'fleet
// device revoke/reinstate' or a suspension) is a system-account message,
// so NATS delivers it to the site's server as to the hub's own nodes, and
// the site's server applies it: a revoked or suspended device's
// connections at the site are closed, new ones refused.
//
// Kept: the site resolves accounts with a full (directory) resolver in
// DATA/jwt, so the last account JWT it took survives a restart with the
// uplink down; the auth directory's copy only replaces it if newer.
//
// Caught up: an update pushed while the uplink was down never reaches the
// site by itself (the hub's resolver keeps no history to send). When the
// system-account link comes (back) up, and every siteAuthRecheck while it
// is up, the site asks every server it reaches for the account JWT it runs
// with ($SYS.REQ.ACCOUNT.<account>.INFO) and stores the newest signed by the
// operator in its resolver, which applies it.
const (
	siteAuthCheckEvery = time.Second
	siteAuthRecheck    = 30 * time.Second
	siteAuthAnswerWait = time.Second
)

// siteAuthority is the --auth state of a running site.
type siteAuthority struct {
	a      *auth.Authority
	res    *server.DirAccResolver
	sys    *nats.Conn // the site server's system account, in process
	domain string     // the hub's JetStream domain
}

// siteAuth is the server's configuration (siteServerOptions, and with
// --auth the hub's authority, a full resolver in DATA/jwt and the
// system-account leaf connection) and the options of the site's own
// connection.
func (c *SiteCmd) siteAuth(hub []*url.URL) (func(*server.Options), []nats.Option, *siteAuthority, error) {
	if c.Auth == "" {
		return func(o *server.Options) { siteServerOptions(o, c.Domain, hub) }, nil, nil, nil
	}
	if _, err := os.Stat(filepath.Join(c.Auth, "operator.jwt")); err != nil {
		return nil, nil, nil, usagef("--auth %s: no auth keys there: copy the hub's DATA/auth directory (of 'fleet server --auth') to the site", c.Auth)
	}
	a, err := auth.Open(c.Auth)
	if err != nil {
		return nil, nil, nil, err
	}
	op, sysPub, preload, err := a.ServerConfig()
	if err != nil {
		return nil, nil, nil, err
	}
	res, err := server.NewDirAccResolver(filepath.Join(c.Data, "jwt"), 0, time.Minute, server.NoDelete)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("site account resolver %s: %w", filepath.Join(c.Data, "jwt"), err)
	}
	for pub, tok := range preload {
		if err := storeIfNewer(a, res, pub, tok); err != nil {
			return nil, nil, nil, fmt.Errorf("site account resolver: %w", err)
		}
	}
	sa := &siteAuthority{a: a, res: res, domain: c.HubDomain}
	return func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{op}
		o.AccountResolver = res
		o.SystemAccount = sysPub
		siteServerOptions(o, c.Domain, hub)
		r := o.LeafNode.Remotes[0]
		r.LocalAccount = a.AccountPublicKey() // the FLEET account on both sides
		r.Credentials = a.OperatorCredsPath()
		o.LeafNode.Remotes = append(o.LeafNode.Remotes, &server.RemoteLeafOpts{
			URLs:         hub,
			LocalAccount: sysPub, // the system account on both sides: account updates reach the site
			Credentials:  a.SystemCredsPath(),
		})
	}, []nats.Option{nats.UserCredentials(a.OperatorCredsPath())}, sa, nil
}

// storeIfNewer stores tok in res unless what res has for pub is newer
// (auth.AccountState.NewerThan: issued later, or in the same second with a
// higher revision). The resolver's own check compares issue seconds only
// and would take the auth directory's older copy of the same second over
// the JWT the site took live.
func storeIfNewer(a *auth.Authority, res *server.DirAccResolver, pub, tok string) error {
	if pub == a.AccountPublicKey() {
		if have, err := res.LoadAcc(pub); err == nil {
			was, err1 := a.StateOf(have)
			now, err2 := a.StateOf(tok)
			if err1 == nil && err2 == nil && !now.NewerThan(was) {
				return nil
			}
		}
	}
	return res.Store(pub, tok)
}

// State is the FLEET account JWT the site's server runs with.
func (sa *siteAuthority) State() (auth.AccountState, error) {
	tok, err := sa.res.LoadAcc(sa.a.AccountPublicKey())
	if err != nil {
		return auth.AccountState{}, err
	}
	return sa.a.StateOf(tok)
}

// AuthState is the FLEET account JWT the site runs with (its issue time
// and revocations); an error without --auth.
func (rs *RunningSite) AuthState() (auth.AccountState, error) {
	if rs.auth == nil {
		return auth.AccountState{}, fmt.Errorf("the site runs without --auth")
	}
	return rs.auth.State()
}

// sysLinkUp reports whether the system account's leaf connection is up.
func (rs *RunningSite) sysLinkUp() bool {
	lz, err := rs.Server.Leafz(&server.LeafzOptions{Account: rs.auth.a.SystemAccountPublicKey()})
	return err == nil && lz.NumLeafs > 0
}

// followHubAccount catches the site up with the hub's account JWT whenever
// the system-account link comes up (and every siteAuthRecheck while it is
// up), and says when the site goes on with what it has.
func (rs *RunningSite) followHubAccount(ctx context.Context) {
	defer close(rs.authDone)
	t := time.NewTicker(siteAuthCheckEvery)
	defer t.Stop()
	wasUp, last := false, time.Time{}
	for {
		up := rs.sysLinkUp()
		switch {
		case up && (!wasUp || time.Since(last) > siteAuthRecheck):
			if rs.catchUp(ctx) {
				last = time.Now()
			} else {
				up = false // not heard from the hub yet: ask again at the next tick
			}
		case !up && wasUp:
			st, _ := rs.auth.State()
			fmt.Fprintf(os.Stderr, "fleet site: uplink down: the site goes on with the account JWT it has (%s); revocations made at the hub meanwhile apply here when the uplink is back\n", st)
		}
		wasUp = up
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// catchUp asks the servers the site reaches for the FLEET account JWT and
// stores the newest in the site's resolver (which applies it, closing the
// connections of keys it revokes). It reports whether a hub server answered.
func (rs *RunningSite) catchUp(ctx context.Context) bool {
	sa := rs.auth
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	answers, err := sa.a.AccountJWTsOf(actx, sa.sys, siteAuthAnswerWait)
	if err != nil {
		return false
	}
	var hub []string // only the hub's answers count: other sites may be behind
	for _, ans := range answers {
		if ans.Domain == sa.domain {
			hub = append(hub, ans.JWT)
		}
	}
	tok, st, ok := sa.a.NewestAccountJWT(hub)
	if !ok {
		return false
	}
	before, _ := sa.State()
	// an answer older than an update that reached the site meanwhile is not
	// taken. (An update of the same second arriving live between State and
	// Store would be replaced by this older answer, the resolver keeping
	// any other JWT of the same second; the next recheck takes the newer
	// one back from the hub.)
	if st.NewerThan(before) {
		if err := storeIfNewer(sa.a, sa.res, sa.a.AccountPublicKey(), tok); err != nil {
			fmt.Fprintf(os.Stderr, "fleet site: the hub's account JWT (%s) could not be stored: %v\n", st, err)
			return false
		}
		fmt.Fprintf(os.Stderr, "fleet site: took the hub's account JWT (%s; the site had: %s)\n", st, before)
	}
	return true
}

// startAuth opens the site server's system-account connection and starts
// following the hub's account JWT.
func (rs *RunningSite) startAuth(ctx context.Context) error {
	sys, err := rs.Server.Connect(nats.UserCredentials(rs.auth.a.SystemCredsPath()), nats.Name("fleet-site-auth"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("site system account connection: %w", err)
	}
	rs.auth.sys = sys
	rs.authDone = make(chan struct{})
	go rs.followHubAccount(ctx)
	return nil
}
