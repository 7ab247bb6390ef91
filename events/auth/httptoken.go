package auth

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

const httpToken = "http.token"

// HTTPTokenPath is the file of the bearer token that the HTTP API and the
// dashboard of a `fleet server --auth` require (mode 0600, like the
// operator's credentials).
func (a *Authority) HTTPTokenPath() string { return a.path(httpToken) }

// HTTPToken returns the HTTP API's bearer token, creating it (32 random
// bytes, base64url) the first time. Delete the file and restart the server
// to change it.
func (a *Authority) HTTPToken() (string, error) {
	b, err := os.ReadFile(a.HTTPTokenPath())
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if len(tok) < 32 {
			return "", fmt.Errorf("http token %s: %d characters: must be at least 32 (delete the file to make a new one)", a.HTTPTokenPath(), len(tok))
		}
		return tok, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("http token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("http token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := writeFileAtomic(a.HTTPTokenPath(), []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
