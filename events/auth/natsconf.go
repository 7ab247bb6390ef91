package auth

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// NATSConfigFile is the name, in the auth directory, of the nats-server
// configuration block that makes a server of one's own (a cluster node, a
// hub) trust this authority (fleet server --nats URL --auth writes it).
const NATSConfigFile = "nats-auth.conf"

// NATSConfig is the nats-server configuration block that trusts this
// authority, for servers fleet does not embed (the nodes of a cluster, a
// hub): the operator JWT, the system account, and a memory resolver
// preloaded with the account JWTs (the FLEET account's with its current
// revocations). Include it in every node's config (include nats-auth.conf);
// revocations reach running nodes with Push, and a node restarted later
// needs the block written after the revocation.
func (a *Authority) NATSConfig() (string, error) {
	_, sysPub, pre, err := a.ServerConfig()
	if err != nil {
		return "", err
	}
	op, err := os.ReadFile(a.path(operatorJWT))
	if err != nil {
		return "", fmt.Errorf("operator jwt: %w", err)
	}
	tok := strings.TrimSpace(string(op))
	var b strings.Builder
	b.WriteString("# fleet's decentralized auth (written by fleet from its auth directory; do not edit)\n")
	fmt.Fprintf(&b, "operator: %q\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n", tok, sysPub)
	keys := make([]string, 0, len(pre))
	for k := range pre {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s: %q\n", k, pre[k])
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// WriteNATSConfig writes NATSConfig to NATSConfigFile in the auth
// directory and returns its path.
func (a *Authority) WriteNATSConfig() (string, error) {
	s, err := a.NATSConfig()
	if err != nil {
		return "", err
	}
	p := filepath.Join(a.dir, NATSConfigFile)
	return p, writeFileAtomic(p, []byte(s), 0o600)
}
