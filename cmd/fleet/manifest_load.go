package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/fleet-dev/fleet/events"
)

// loadManifest reads the manifest file ('-' for standard input) and parses
// it strictly, as apply, apply --selector and rollout do: a file that cannot
// be read is bad usage; a bad manifest names the file, the field and the rule.
func loadManifest(file string) (events.Manifest, error) {
	data, err := readInput(file)
	if err != nil {
		return events.Manifest{}, usageError{err}
	}
	m, err := events.ParseManifest(data)
	if err != nil {
		return events.Manifest{}, fmt.Errorf("manifest %s: %w", file, err)
	}
	return m, nil
}

// loadSigner loads the --key signer and its key id; none for "".
func loadSigner(key string) (events.Signer, string, error) {
	if key == "" {
		return nil, "", nil
	}
	s, err := events.LoadSigner(key)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", usageError{fmt.Errorf("--key: %w", err)} // a missing file is bad usage, like a missing -f
		}
		return nil, "", err
	}
	return s, s.KeyID(), nil
}
