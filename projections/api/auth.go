package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// TokenCookie is the cookie the dashboard's login sets.
const TokenCookie = "fleet_token"

// OpenPaths are served without a credential by RequireToken: the health
// check (for load balancers and probes: ok or the reason, nothing about
// devices) and the Prometheus metrics (aggregate counters and gauges with no
// labels: no device ids, no manifests, nothing a scraper would need a secret
// for).
var OpenPaths = []string{"/healthz", "/metrics"}

// RequireToken serves h only to requests that carry token: as
// `Authorization: Bearer TOKEN` (API clients) or in the TokenCookie cookie
// (the dashboard in a browser). A browser logs in by opening any page with
// `?token=TOKEN`: the answer sets the cookie (HttpOnly, SameSite=Strict,
// Secure over TLS) and redirects to the same page without the token, so it
// stays out of the address bar and history. Everything else is refused with
// 401 and `WWW-Authenticate: Bearer`. OpenPaths need no credential. Tokens
// are compared in constant time (of their SHA-256, so not even the length
// leaks).
func RequireToken(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	ok := func(got string) bool {
		sum := sha256.Sum256([]byte(got))
		return got != "" && subtle.ConstantTimeCompare(sum[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range OpenPaths {
			if r.URL.Path == p {
				h.ServeHTTP(w, r)
				return
			}
		}
		if q := r.URL.Query(); q.Has("token") {
			if !ok(q.Get("token")) {
				refuse(w, r, "the token in the address is not this server's")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: q.Get("token"), Path: "/",
				HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
			q.Del("token")
			to := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, to.String(), http.StatusSeeOther)
			return
		}
		if bearer, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); found {
			if ok(strings.TrimSpace(bearer)) {
				h.ServeHTTP(w, r)
				return
			}
			refuse(w, r, "the bearer token is not this server's")
			return
		}
		if c, err := r.Cookie(TokenCookie); err == nil && ok(c.Value) {
			h.ServeHTTP(w, r)
			return
		}
		refuse(w, r, "a credential is required")
	})
}

func refuse(w http.ResponseWriter, r *http.Request, why string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="fleet"`)
	w.Header().Set("Cache-Control", "no-store")
	msg := why + ": this server runs with --auth; send 'Authorization: Bearer TOKEN' with the token from the file 'fleet server' printed (DATA/auth/http.token), or open /?token=TOKEN once in the browser"
	if strings.HasPrefix(r.URL.Path, "/api/") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, http.StatusUnauthorized)
}
