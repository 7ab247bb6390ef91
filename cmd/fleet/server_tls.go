package main

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/embedded"
	"github.com/fleet-dev/fleet/projections/api"
)

// ServerTLS are fleet server's TLS flags: the embedded NATS server's client
// port, and the HTTP API and dashboard. Clients trust the certificate with
// --tls-ca (fleet's global flag, fleet-agent's flag).
type ServerTLS struct {
	TLSCert     string `name:"tls-cert" placeholder:"FILE" help:"Serve the embedded NATS server's client port over TLS with this certificate (PEM; with --tls-key). Agents and clients then need --tls-ca."`
	TLSKey      string `name:"tls-key" placeholder:"FILE" help:"The private key of --tls-cert (PEM)."`
	HTTPTLSCert string `name:"http-tls-cert" placeholder:"FILE" help:"Serve the HTTP API and dashboard over HTTPS with this certificate (PEM; with --http-tls-key)."`
	HTTPTLSKey  string `name:"http-tls-key" placeholder:"FILE" help:"The private key of --http-tls-cert (PEM)."`
}

// loadPair loads a certificate and its key given by two flags, or nothing
// when neither is given.
func loadPair(certFlag, cert, keyFlag, key string) (*tls.Certificate, error) {
	switch {
	case cert == "" && key == "":
		return nil, nil
	case cert == "" || key == "":
		return nil, usagef("%s and %s go together: give both (a PEM certificate and its private key)", certFlag, keyFlag)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, usagef("%s %s, %s %s: %v (both must be PEM files, the key the certificate's own)", certFlag, cert, keyFlag, key, err)
	}
	return &pair, nil
}

// natsTLS turns TLS on for the embedded server's client port when
// --tls-cert/--tls-key are given. In-process connections (the server's own
// parts) need none.
func (t ServerTLS) natsTLS(eo *embedded.Options) (bool, error) {
	pair, err := loadPair("--tls-cert", t.TLSCert, "--tls-key", t.TLSKey)
	if pair == nil || err != nil {
		return false, err
	}
	prev := eo.Configure
	eo.Configure = func(o *server.Options) {
		if prev != nil {
			prev(o)
		}
		o.TLS = true
		o.TLSCert, o.TLSKey = t.TLSCert, t.TLSKey
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*pair}, MinVersion: tls.VersionTLS12}
	}
	return true, nil
}

// httpTLS is the HTTPS configuration of --http-tls-cert/--http-tls-key, or nil.
func (t ServerTLS) httpTLS() (*tls.Config, error) {
	pair, err := loadPair("--http-tls-cert", t.HTTPTLSCert, "--http-tls-key", t.HTTPTLSKey)
	if pair == nil || err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{*pair}, MinVersion: tls.VersionTLS12}, nil
}

// httpAuth is the handler of the HTTP API and dashboard: with auth on
// (authDir set), every route but api.OpenPaths requires the bearer token of
// the auth directory (created on first use; its path is returned).
func httpAuth(authDir string, h http.Handler) (http.Handler, string, error) {
	if authDir == "" {
		return h, "", nil
	}
	a, err := auth.Open(authDir)
	if err != nil {
		return nil, "", err
	}
	tok, err := a.HTTPToken()
	if err != nil {
		return nil, "", fmt.Errorf("http api: %w", err)
	}
	return api.RequireToken(tok, h), a.HTTPTokenPath(), nil
}
