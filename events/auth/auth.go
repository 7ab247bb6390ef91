// Package auth is fleet's identity and least privilege, built on NATS's own
// decentralized auth: an operator, a system account, and one account (FLEET)
// whose users are JWTs signed by the account key. Each device is a user whose
// JWT allows exactly its own subjects; revoking a device adds its user key to
// the account JWT's revocation list, which the server applies as soon as the
// new account JWT is pushed to it (connections of the device are closed, new
// ones refused).
//
// Everything lives in one directory (fleet server --data DIR keeps it under
// DIR/auth): the operator's and accounts' seeds and JWTs, the operator's
// credentials, and a record per device. Issuing credentials needs only this
// directory, not the server; revoking needs the server to be told (Push),
// and a server started later reads the revocation from the account JWT.
//
// This package links no server; events/embedded configures one from it.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/fleet-dev/fleet/events"
)

// Names in the auth directory.
const (
	AccountName  = "FLEET"
	SystemName   = "SYS"
	operatorSeed = "operator.nk"
	operatorJWT  = "operator.jwt"
	sysSeed      = "sys-account.nk"
	sysJWT       = "sys-account.jwt"
	sysCreds     = "sys-user.creds"
	accountSeed  = "account.nk"
	accountJWT   = "account.jwt"
	adminCreds   = "operator.creds"
	devicesDir   = "devices"
	deviceTag    = "fleet-device"
)

// ErrRevoked: the device's credentials were revoked.
var ErrRevoked = errors.New("revoked")

// Authority is an auth directory opened for use. Not safe for concurrent
// writers across processes: run one `fleet device add/revoke` at a time.
type Authority struct {
	dir                string
	operator, sys, acc nkeys.KeyPair
	accPub, sysPub     string
}

// Open opens the auth directory dir, creating the operator, the system
// account, the FLEET account and the operator's credentials the first time.
func Open(dir string) (*Authority, error) {
	if err := os.MkdirAll(filepath.Join(dir, devicesDir), 0o700); err != nil {
		return nil, fmt.Errorf("auth directory %s: %w", dir, err)
	}
	a := &Authority{dir: dir}
	var err error
	if a.operator, err = loadOrCreateSeed(a.path(operatorSeed), nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.sys, err = loadOrCreateSeed(a.path(sysSeed), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.acc, err = loadOrCreateSeed(a.path(accountSeed), nkeys.CreateAccount); err != nil {
		return nil, err
	}
	a.sysPub, _ = a.sys.PublicKey()
	a.accPub, _ = a.acc.PublicKey()
	if err := a.ensureJWTs(); err != nil {
		return nil, err
	}
	return a, nil
}

// Dir is the auth directory.
func (a *Authority) Dir() string { return a.dir }

func (a *Authority) path(name string) string { return filepath.Join(a.dir, name) }

// OperatorCredsPath is the credentials file of the operator: a user of the
// FLEET account with every permission (apply manifests, run projections).
func (a *Authority) OperatorCredsPath() string { return a.path(adminCreds) }

// SystemCredsPath is the credentials file of the system account's user,
// used to push account updates (revocations) to the server.
func (a *Authority) SystemCredsPath() string { return a.path(sysCreds) }

// AccountPublicKey is the FLEET account's public key.
func (a *Authority) AccountPublicKey() string { return a.accPub }

func (a *Authority) ensureJWTs() error {
	opPub, _ := a.operator.PublicKey()
	if _, err := os.Stat(a.path(operatorJWT)); errors.Is(err, os.ErrNotExist) {
		oc := jwt.NewOperatorClaims(opPub)
		oc.Name = "fleet"
		oc.SystemAccount = a.sysPub
		tok, err := oc.Encode(a.operator)
		if err != nil {
			return fmt.Errorf("operator jwt: %w", err)
		}
		if err := writeFileAtomic(a.path(operatorJWT), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(a.path(sysJWT)); errors.Is(err, os.ErrNotExist) {
		ac := jwt.NewAccountClaims(a.sysPub)
		ac.Name = SystemName
		tok, err := ac.Encode(a.operator)
		if err != nil {
			return fmt.Errorf("system account jwt: %w", err)
		}
		if err := writeFileAtomic(a.path(sysJWT), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(a.path(accountJWT)); errors.Is(err, os.ErrNotExist) {
		ac := jwt.NewAccountClaims(a.accPub)
		ac.Name = AccountName
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1, MaxAckPending: -1}
		if err := a.saveAccount(ac); err != nil {
			return err
		}
	}
	if _, err := os.Stat(a.path(sysCreds)); errors.Is(err, os.ErrNotExist) {
		creds, _, err := a.issueUser(a.sys, "sys", nil)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(a.path(sysCreds), creds, 0o600); err != nil {
			return err
		}
	}
	if _, err := os.Stat(a.path(adminCreds)); errors.Is(err, os.ErrNotExist) {
		creds, _, err := a.issueUser(a.acc, "operator", nil)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(a.path(adminCreds), creds, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ServerConfig is what a server needs to trust this authority: the operator
// claims, the system account's public key, and the account JWTs to preload
// (public key to JWT), the FLEET account's with its current revocations.
func (a *Authority) ServerConfig() (*jwt.OperatorClaims, string, map[string]string, error) {
	b, err := os.ReadFile(a.path(operatorJWT))
	if err != nil {
		return nil, "", nil, fmt.Errorf("operator jwt: %w", err)
	}
	oc, err := jwt.DecodeOperatorClaims(string(b))
	if err != nil {
		return nil, "", nil, fmt.Errorf("operator jwt %s: %w", a.path(operatorJWT), err)
	}
	pre := map[string]string{}
	for pub, name := range map[string]string{a.sysPub: sysJWT, a.accPub: accountJWT} {
		b, err := os.ReadFile(a.path(name))
		if err != nil {
			return nil, "", nil, fmt.Errorf("account jwt: %w", err)
		}
		pre[pub] = strings.TrimSpace(string(b))
	}
	return oc, a.sysPub, pre, nil
}

// AccountJWT returns the FLEET account's current JWT.
func (a *Authority) AccountJWT() (string, error) {
	b, err := os.ReadFile(a.path(accountJWT))
	if err != nil {
		return "", fmt.Errorf("account jwt: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (a *Authority) account() (*jwt.AccountClaims, error) {
	tok, err := a.AccountJWT()
	if err != nil {
		return nil, err
	}
	ac, err := jwt.DecodeAccountClaims(tok)
	if err != nil {
		return nil, fmt.Errorf("account jwt %s: %w", a.path(accountJWT), err)
	}
	return ac, nil
}

func (a *Authority) saveAccount(ac *jwt.AccountClaims) error {
	nextRevision(ac) // claims.go: two JWTs of one second differ, and the later is known
	tok, err := ac.Encode(a.operator)
	if err != nil {
		return fmt.Errorf("sign account jwt: %w", err)
	}
	return writeFileAtomic(a.path(accountJWT), []byte(tok), 0o600)
}

// issueUser makes a user key and a JWT signed by the account key acc, and
// returns the credentials file and the user's public key.
func (a *Authority) issueUser(acc nkeys.KeyPair, name string, configure func(*jwt.UserClaims)) ([]byte, string, error) {
	u, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("user key: %w", err)
	}
	pub, _ := u.PublicKey()
	seed, _ := u.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	if configure != nil {
		configure(uc)
	}
	tok, err := uc.Encode(acc)
	if err != nil {
		return nil, "", fmt.Errorf("sign user jwt %s: %w", name, err)
	}
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		return nil, "", fmt.Errorf("credentials of %s: %w", name, err)
	}
	return creds, pub, nil
}

// DeviceMaxPayload is the largest message (headers and body) a device's
// credentials may send: the FLEET stream's max_msg_size, so that an event
// too large for the log is refused by the device's own connection before it
// leaves (the agent parks it) and a device cannot send the server the 2 MiB
// the server takes from the control plane.
const DeviceMaxPayload = 1 << 20

// Device is the record of one device's credentials.
type Device struct {
	ID        string     `json:"id"`
	UserKey   string     `json:"userKey"` // public nkey of its current credentials
	IssuedAt  time.Time  `json:"issuedAt"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	OldKeys   []string   `json:"oldKeys,omitempty"` // keys of earlier, revoked credentials
	// SuspendedUntil is set while the device's current credentials are
	// suspended (SuspendDevice): revoked in the account JWT until then.
	SuspendedUntil *time.Time `json:"suspendedUntil,omitempty"`
	SuspendReason  string     `json:"suspendReason,omitempty"`
	Suspensions    int        `json:"suspensions,omitempty"` // how many times it was suspended
}

// Revoked reports whether the device's credentials are revoked.
func (d Device) Revoked() bool { return d.RevokedAt != nil }

func (a *Authority) devicePath(id string) string {
	return filepath.Join(a.dir, devicesDir, id+".json")
}

// LookupDevice returns a device's record, or an error wrapping events.ErrNotFound.
func (a *Authority) LookupDevice(id string) (Device, error) {
	if err := events.CheckID("device", id); err != nil {
		return Device{}, err
	}
	b, err := os.ReadFile(a.devicePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return Device{}, fmt.Errorf("device %s: %w: no credentials were issued for it", id, events.ErrNotFound)
	}
	if err != nil {
		return Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	var d Device
	if err := json.Unmarshal(b, &d); err != nil {
		return Device{}, fmt.Errorf("device record %s: %w", a.devicePath(id), err)
	}
	return d, nil
}

// AddDevice issues credentials for device id with least privilege (see
// DevicePermissions) and returns the credentials file's contents. A device
// that already has valid credentials is refused (revoke it first); a revoked
// device gets new credentials with a new key, the old ones stay revoked.
func (a *Authority) AddDevice(id string) ([]byte, Device, error) {
	if err := events.CheckID("device", id); err != nil {
		return nil, Device{}, err
	}
	prev, err := a.LookupDevice(id)
	switch {
	case err == nil && !prev.Revoked():
		return nil, Device{}, fmt.Errorf("%w: device %s already has credentials (key %s): revoke them first ('fleet device revoke %s')", events.ErrInvalid, id, short(prev.UserKey), id)
	case err != nil && !errors.Is(err, events.ErrNotFound):
		return nil, Device{}, err
	}
	creds, pub, err := a.issueUser(a.acc, id, func(uc *jwt.UserClaims) {
		uc.Tags.Add(deviceTag)
		uc.Permissions = DevicePermissions(id)
		uc.Limits.Payload = DeviceMaxPayload // the server refuses larger messages on the device's connection
	})
	if err != nil {
		return nil, Device{}, err
	}
	d := Device{ID: id, UserKey: pub, IssuedAt: time.Now().UTC()}
	if err == nil && prev.UserKey != "" {
		d.OldKeys = append(append([]string(nil), prev.OldKeys...), prev.UserKey)
	}
	b, _ := json.MarshalIndent(d, "", "  ")
	if err := writeFileAtomic(a.devicePath(id), b, 0o600); err != nil {
		return nil, Device{}, err
	}
	return creds, d, nil
}

// RevokeDevice revokes the device's credentials in the account JWT (its
// current key and any older ones) and returns the new account JWT, which
// the caller pushes to a running server (Push). Revoking twice is harmless.
func (a *Authority) RevokeDevice(id string) (string, Device, error) {
	d, err := a.LookupDevice(id)
	if err != nil {
		return "", Device{}, err
	}
	ac, err := a.account()
	if err != nil {
		return "", Device{}, err
	}
	now := time.Now()
	for _, k := range append([]string{d.UserKey}, d.OldKeys...) {
		if _, done := ac.Revocations[k]; !done {
			// revoke everything issued up to now; JWT times have a second's
			// granularity, so one second ahead covers this very second.
			ac.RevokeAt(k, now.Add(time.Second))
		}
	}
	if err := a.saveAccount(ac); err != nil {
		return "", Device{}, err
	}
	if d.RevokedAt == nil {
		t := now.UTC()
		d.RevokedAt = &t
		b, _ := json.MarshalIndent(d, "", "  ")
		if err := writeFileAtomic(a.devicePath(id), b, 0o600); err != nil {
			return "", Device{}, err
		}
	}
	tok, err := a.AccountJWT()
	return tok, d, err
}

// Devices lists every device that was issued credentials, by id.
func (a *Authority) Devices() ([]Device, error) {
	ents, err := os.ReadDir(filepath.Join(a.dir, devicesDir))
	if err != nil {
		return nil, fmt.Errorf("devices: %w", err)
	}
	var out []Device
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !events.ValidID(id) {
			continue
		}
		d, err := a.LookupDevice(id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Push sends an account JWT to the server(s) nc is connected to, over the
// system account (nc must use SystemCredsPath), and waits for the answer.
func Push(ctx context.Context, nc *nats.Conn, accountJWT string) error {
	ac, err := jwt.DecodeAccountClaims(accountJWT)
	if err != nil {
		return fmt.Errorf("push account: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.UPDATE", ac.Subject), []byte(accountJWT))
	if err != nil {
		return fmt.Errorf("push account %s to the server: %w", ac.Name, err)
	}
	var resp struct {
		Data *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"data"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("push account %s: unreadable answer %q", ac.Name, msg.Data)
	}
	if resp.Error != nil {
		return fmt.Errorf("push account %s: server refused it: %s", ac.Name, resp.Error.Description)
	}
	return nil
}

// InboxPrefix is the reply-subject prefix a device must use ("_INBOX_" and
// its id): it may subscribe there and nowhere else, so it cannot read
// replies meant for anyone else.
func InboxPrefix(device string) string { return "_INBOX_" + device }

// DevicePermissions is the least privilege of a device: exactly what the
// agent uses. It may publish its own lifecycle, attempt, status and drift
// events (plain or atomic-batch publishes) and its own heartbeat key, read
// its own manifest (direct get of the subject's last message, and a core
// subscription on the subject as a hint that a new one was applied), look up
// the FLEET stream and heartbeat bucket, and receive replies on its own
// inbox prefix. Nothing else: no other device's subjects, no manifest
// writes, and no consumer at all. A device that could create a consumer
// could make it a push consumer with any deliver_subject (such as the
// projection service's rebuild endpoint) and have the server publish there
// for it, which no publish permission of the device would stop.
//
// What the permissions cannot express is refused by the streams'
// configuration: roll-ups (FLEET and the heartbeat bucket, see
// EnsureHeartbeatBucket), purges and deletes (FLEET), per-message TTLs,
// counters and schedules (neither stream allows them).
func DevicePermissions(device string) jwt.Permissions {
	api := "$JS.API."
	return jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{
			events.LifecycleSubject(device),
			events.ResourceSubject(device, events.KindAttempt, "*"),
			events.ResourceSubject(device, events.KindStatus, "*"),
			events.ResourceSubject(device, events.KindDrift, "*"),
			"$KV." + events.HeartbeatBucket + "." + device,
			api + "STREAM.INFO." + events.Stream,
			api + "STREAM.INFO.KV_" + events.HeartbeatBucket,
			api + "DIRECT.GET." + events.Stream + "." + events.ManifestSubject(device),
			api + "DIRECT.GET.KV_" + events.HeartbeatBucket + ".$KV." + events.HeartbeatBucket + "." + device,
		}},
		Sub: jwt.Permission{Allow: jwt.StringList{
			InboxPrefix(device) + ".>",
			events.ManifestSubject(device), // a hint that a new manifest was applied
		}},
	}
}

// ClientOptions returns the connection options for a credentials file: the
// credentials, and for a device's credentials its inbox prefix (without it
// every request of the device would time out on a permission violation).
func ClientOptions(credsFile string) ([]nats.Option, error) {
	opts := []nats.Option{nats.UserCredentials(credsFile)}
	id, ok, err := CredsDevice(credsFile)
	if err != nil {
		return nil, err
	}
	if ok {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(id)))
	}
	return opts, nil
}

// CredsDevice reads a credentials file and reports the device it was issued
// for by AddDevice, if any. The error names the file and the problem.
func CredsDevice(credsFile string) (string, bool, error) {
	b, err := os.ReadFile(credsFile)
	if err != nil {
		return "", false, fmt.Errorf("credentials %s: %w", credsFile, err)
	}
	return ParseCredsDevice(b)
}

// ParseCredsDevice is CredsDevice on the file's contents.
func ParseCredsDevice(b []byte) (string, bool, error) {
	if len(b) > events.MaxKeyFileBytes {
		return "", false, fmt.Errorf("%w: credentials: %d bytes: must be at most %d", events.ErrInvalid, len(b), events.MaxKeyFileBytes)
	}
	tok, err := jwt.ParseDecoratedJWT(b)
	if err != nil {
		return "", false, fmt.Errorf("%w: credentials: %v", events.ErrInvalid, err)
	}
	uc, err := jwt.DecodeUserClaims(tok)
	if err != nil {
		return "", false, fmt.Errorf("%w: credentials: not a NATS user JWT: %v", events.ErrInvalid, err)
	}
	if !uc.Tags.Contains(deviceTag) {
		return "", false, nil
	}
	if !events.ValidID(uc.Name) {
		return "", false, fmt.Errorf("%w: credentials: device name %q: must be %s", events.ErrInvalid, uc.Name, events.IDRule)
	}
	return uc.Name, true, nil
}

func loadOrCreateSeed(path string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
		if err != nil {
			return nil, fmt.Errorf("%w: seed %s: %v", events.ErrInvalid, path, err)
		}
		return kp, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("seed %s: %w", path, err)
	}
	kp, err := create()
	if err != nil {
		return nil, err
	}
	seed, _ := kp.Seed()
	if err := writeFileAtomic(path, seed, 0o600); err != nil {
		return nil, err
	}
	return kp, nil
}

// writeFileAtomic writes via a temporary file, fsync and rename, so a crash
// leaves the old or the new file, never half of one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func short(k string) string {
	if len(k) > 12 {
		return k[:12] + "…"
	}
	return k
}

// TLSOptions returns the connection options that make a client trust the
// server certificates signed by the CA (or self-signed certificate) in the
// PEM file caFile, and require TLS; none when caFile is empty. The file is
// checked here, so a wrong path is an error that names it rather than a
// failed handshake later.
func TLSOptions(caFile string) ([]nats.Option, error) {
	if caFile == "" {
		return nil, nil
	}
	if _, err := os.Stat(caFile); err != nil {
		return nil, fmt.Errorf("%w: --tls-ca %s: %v (a PEM file with the CA that signed the server's certificate)", events.ErrInvalid, caFile, err)
	}
	return []nats.Option{nats.RootCAs(caFile)}, nil
}
