package auth

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Suspended reports whether the device's credentials are suspended at now:
// revoked in the account JWT until SuspendedUntil, when ReinstateDevice
// lifts the revocation and the same credentials work again.
func (d Device) Suspended(now time.Time) bool {
	return d.SuspendedUntil != nil && !d.Revoked() && now.Before(*d.SuspendedUntil)
}

// SuspendDevice suspends the device's current credentials until until: its
// key goes on the account JWT's revocation list (the server closes its
// connections and refuses new ones once the returned JWT is pushed, Push),
// and the record says until when and why. Unlike RevokeDevice it is meant
// to be lifted: ReinstateDevice removes the revocation, so the device's
// agent reconnects with the credentials it has. A revoked device cannot be
// suspended (it is refused for good already); suspending a suspended device
// moves its end to until.
func (a *Authority) SuspendDevice(id string, until time.Time, reason string) (string, Device, error) {
	d, err := a.LookupDevice(id)
	if err != nil {
		return "", Device{}, err
	}
	if d.Revoked() {
		return "", Device{}, fmt.Errorf("%w: device %s: its credentials are revoked: a suspension has nothing to add ('fleet device add %s' issues new ones)", events.ErrInvalid, id, id)
	}
	ac, err := a.account()
	if err != nil {
		return "", Device{}, err
	}
	// revoke what was issued up to now (JWT times have a second's granularity)
	ac.RevokeAt(d.UserKey, time.Now().Add(time.Second))
	if err := a.saveAccount(ac); err != nil {
		return "", Device{}, err
	}
	t := until.UTC()
	if d.SuspendedUntil == nil {
		d.Suspensions++
	}
	d.SuspendedUntil, d.SuspendReason = &t, reason
	if err := a.saveDevice(d); err != nil {
		return "", Device{}, err
	}
	tok, err := a.AccountJWT()
	return tok, d, err
}

// ReinstateDevice lifts a suspension: the device's key leaves the account
// JWT's revocation list (push the returned JWT to the server, Push) and the
// same credentials work again. A device that is not suspended is left as it
// is (reinstating twice is harmless); a revoked device stays revoked, with
// an error wrapping events.ErrInvalid.
func (a *Authority) ReinstateDevice(id string) (string, Device, error) {
	d, err := a.LookupDevice(id)
	if err != nil {
		return "", Device{}, err
	}
	if d.Revoked() {
		return "", Device{}, fmt.Errorf("%w: device %s: its credentials are revoked, not suspended: reinstating would not bring them back ('fleet device add %s' issues new ones)", events.ErrInvalid, id, id)
	}
	ac, err := a.account()
	if err != nil {
		return "", Device{}, err
	}
	if _, ok := ac.Revocations[d.UserKey]; ok {
		ac.ClearRevocation(d.UserKey)
		if err := a.saveAccount(ac); err != nil {
			return "", Device{}, err
		}
	}
	if d.SuspendedUntil != nil {
		d.SuspendedUntil, d.SuspendReason = nil, ""
		if err := a.saveDevice(d); err != nil {
			return "", Device{}, err
		}
	}
	tok, err := a.AccountJWT()
	return tok, d, err
}

func (a *Authority) saveDevice(d Device) error {
	b, _ := json.MarshalIndent(d, "", "  ")
	return writeFileAtomic(a.devicePath(d.ID), b, 0o600)
}
