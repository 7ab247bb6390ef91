package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/auth"
	"github.com/fleet-dev/fleet/events/eventstest"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and localhost
// and its key (PEM) into dir, and returns their paths.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "fleet test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestAuthServerRequiresATokenOnHTTPAndServesTLS is issue 17's second
// item: on a `fleet server --auth` the HTTP API and the dashboard (which
// serve whole manifests) require the server's bearer token, except /healthz
// and /metrics; a browser logs in once with ?token= and gets an HttpOnly,
// SameSite=Strict cookie; and NATS and HTTP both run over TLS with a
// certificate the clients trust with --tls-ca.
func TestAuthServerRequiresATokenOnHTTPAndServesTLS(t *testing.T) {
	is := is.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	data := t.TempDir()
	cert, key := selfSigned(t, t.TempDir())
	cmd := &ServerCmd{Data: data, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", RelaxedSync: true, Replicas: 1,
		HeartbeatTTL: 10 * time.Second, Auth: true,
		ServerTLS: ServerTLS{TLSCert: cert, TLSKey: key, HTTPTLSCert: cert, HTTPTLSKey: key}}
	rs, err := cmd.Start(ctx, &Globals{}, nil)
	is.NoErr(err)
	defer rs.Stop()

	tokenFile := filepath.Join(data, "auth", "http.token")
	st, err := os.Stat(tokenFile)
	is.NoErr(err)
	is.Equal(st.Mode().Perm(), os.FileMode(0o600)) // readable by the server's user only
	raw, err := os.ReadFile(tokenFile)
	is.NoErr(err)
	token := strings.TrimSpace(string(raw))

	pem, err := os.ReadFile(cert)
	is.NoErr(err)
	pool := x509.NewCertPool()
	is.True(pool.AppendCertsFromPEM(pem))
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + rs.Env.HTTPAddr
	get := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		is.NoErr(err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		is.NoErr(err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	t.Run("API and dashboard refused without the token", func(t *testing.T) {
		is := is.New(t)
		for _, p := range []string{"/api/devices", "/api/devices/pi-01", "/api/status", "/api/stream", "/api/devices/pi-01/at", "/", "/static/app.js", "/api/explain/pi-01/motd"} {
			resp := get(p, nil)
			is.Equal(resp.StatusCode, http.StatusUnauthorized) // p
			is.True(strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer"))
			resp = get(p, map[string]string{"Authorization": "Bearer " + token + "x"})
			is.Equal(resp.StatusCode, http.StatusUnauthorized) // a wrong token
		}
		resp := get("/?token=wrong", nil)
		is.Equal(resp.StatusCode, http.StatusUnauthorized)
		is.Equal(len(resp.Cookies()), 0)
	})
	t.Run("allowed with the bearer token", func(t *testing.T) {
		is := is.New(t)
		for _, p := range []string{"/api/devices", "/api/status", "/"} {
			is.Equal(get(p, map[string]string{"Authorization": "Bearer " + token}).StatusCode, http.StatusOK) // p
		}
	})
	t.Run("health and metrics stay open", func(t *testing.T) {
		is := is.New(t)
		is.Equal(get("/healthz", nil).StatusCode, http.StatusOK)
		is.Equal(get("/metrics", nil).StatusCode, http.StatusOK)
	})
	t.Run("a browser logs in with ?token= and gets a strict cookie", func(t *testing.T) {
		is := is.New(t)
		resp := get("/?token="+token, nil)
		is.Equal(resp.StatusCode, http.StatusSeeOther)
		is.Equal(resp.Header.Get("Location"), "/") // the token leaves the address bar
		var c *http.Cookie
		for _, x := range resp.Cookies() {
			if x.Name == "fleet_token" {
				c = x
			}
		}
		is.True(c != nil)
		is.True(c.HttpOnly)
		is.Equal(c.SameSite, http.SameSiteStrictMode)
		is.True(c.Secure) // served over TLS
		cookie := map[string]string{"Cookie": c.Name + "=" + c.Value}
		is.Equal(get("/", cookie).StatusCode, http.StatusOK)
		is.Equal(get("/api/devices", cookie).StatusCode, http.StatusOK) // the dashboard's own requests
		is.Equal(get("/api/devices", map[string]string{"Cookie": "fleet_token=forged"}).StatusCode, http.StatusUnauthorized)
	})
	t.Run("plain HTTP to the HTTPS port gets no data", func(t *testing.T) {
		is := is.New(t)
		resp, err := http.Get("http://" + rs.Env.HTTPAddr + "/api/devices")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			is.Equal(resp.StatusCode, http.StatusBadRequest) // Go's answer to plain HTTP on a TLS port
			is.True(!strings.Contains(string(body), "devices"))
		}
	})
	t.Run("NATS over TLS end to end", func(t *testing.T) {
		is := is.New(t)
		creds := filepath.Join(data, "auth", "operator.creds")
		g := &Globals{NATS: rs.Env.NATSURL, Creds: creds, TLSCA: cert}
		nc, store, err := g.Store(ctx, "test")
		is.NoErr(err)
		defer nc.Close()
		is.True(nc.TLSRequired())
		_, err = nc.TLSConnectionState()
		is.NoErr(err) // the connection is TLS
		m, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"hi\\n\"}\n"))
		is.NoErr(err)
		clock, _ := events.NewClock(events.ClockState{}, nil)
		_, err = events.Apply(ctx, store, clock, "pi-01", m, "user:ops", nil)
		is.NoErr(err) // a write over TLS
		// the CLI too
		out, code := replayCLI(t, "replay", "-o", "ndjson", "--nats", rs.Env.NATSURL, "--creds", creds, "--tls-ca", cert)
		is.Equal(code, 0)
		is.Equal(strings.Count(out, "\n"), 1)

		// without the CA the server's certificate is not trusted
		_, err = (&Globals{NATS: rs.Env.NATSURL, Creds: creds}).Connect("no-ca")
		is.True(err != nil)

		// an agent with its device's own credentials converges over TLS
		a, err := auth.Open(filepath.Join(data, "auth"))
		is.NoErr(err)
		devCreds, _, err := a.AddDevice("pi-01")
		is.NoErr(err)
		devPath := filepath.Join(t.TempDir(), "pi-01.creds")
		is.NoErr(os.WriteFile(devPath, devCreds, 0o600))
		root := t.TempDir()
		agent := &AgentCmd{}
		agent.Device, agent.Root, agent.State = "pi-01", root, filepath.Join(t.TempDir(), "state")
		agent.DriftInterval, agent.Concurrency, agent.Format = time.Minute, 4, "json"
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- agent.Run(actx, &Globals{NATS: rs.Env.NATSURL, Creds: devPath, TLSCA: cert})
		}()
		eventstest.WaitFor(t, 15*time.Second, "motd written by the agent over TLS", func() bool {
			b, err := os.ReadFile(filepath.Join(root, "etc", "motd"))
			return err == nil && string(b) == "hi\n"
		})
		stop()
		is.NoErr(<-done)

		// and its revocation reaches the server over TLS
		out, code = replayCLI(t, "device", "revoke", "pi-01", "--data", data, "--nats", rs.Env.NATSURL, "--tls-ca", cert, "-o", "json")
		is.Equal(code, 0)
		if !strings.Contains(out, `"serverTold": true`) {
			t.Fatalf("revoke over TLS: %s", out)
		}
	})
}

// TestServerTLSFlagsAreCheckedBeforeAnythingStarts: a certificate without
// its key (or one that does not load) is bad usage, exit 2, naming the flags.
func TestServerTLSFlagsAreCheckedBeforeAnythingStarts(t *testing.T) {
	cert, key := selfSigned(t, t.TempDir())
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "--tls-cert and --tls-key go together"},
		{[]string{"--http-tls-key", key}, "--http-tls-cert and --http-tls-key go together"},
		{[]string{"--tls-cert", key, "--tls-key", cert}, "--tls-cert " + key + ", --tls-key " + cert},
	} {
		t.Run(c.want, func(t *testing.T) {
			is := is.New(t)
			data := filepath.Join(t.TempDir(), "data")
			cmd, _, stderr := fleetChild(t, nil, append([]string{"server", "--listen", "127.0.0.1:0", "--data", data, "--http", "127.0.0.1:0"}, c.args...)...)
			stop := time.AfterFunc(20*time.Second, func() { _ = cmd.Process.Kill() })
			defer stop.Stop()
			err := cmd.Wait()
			var ee *exec.ExitError
			is.True(errorsAs(err, &ee))
			is.Equal(ee.ExitCode(), 2)
			is.True(strings.Contains(stderr.String(), c.want)) // names the flags
			_, err = os.Stat(data)
			is.True(os.IsNotExist(err)) // nothing left behind
		})
	}
}
