package events_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
)

// TestParseManifestUnquotedMode: an unquoted mode in octal form (0644,
// 0o644, 04755) means its octal digits, block or flow style; the same
// digest as quoted.
func TestParseManifestUnquotedMode(t *testing.T) {
	is := is.New(t)
	quoted, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"mode: 0600\\n\", mode: \"0644\"}\n"))
	is.NoErr(err)
	for _, doc := range []string{
		"resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"mode: 0600\\n\", mode: 0644}\n",
		"resources:\n  - id: motd\n    file: {path: /etc/motd, content: \"mode: 0600\\n\", mode: 0o644}\n",
		"resources:\n  - id: motd\n    file:\n      path: /etc/motd\n      content: \"mode: 0600\\n\"\n      mode: 0644   # octal\n",
		`{"resources":[{"id":"motd","file":{"path":"/etc/motd","content":"mode: 0600\n","mode":0644}}]}`,
	} {
		m, err := events.ParseManifest([]byte(doc))
		is.NoErr(err)
		is.Equal(m.Resources[0].File.Mode, "0644")
		is.Equal(m.Resources[0].File.Content, "mode: 0600\n") // the content is not touched
		is.Equal(m.Digest(), quoted.Digest())
	}
	// Several, in order, and a setuid mode.
	m, err := events.ParseManifest([]byte("resources:\n  - id: a\n    file: {path: /a, content: x, mode: 0600}\n  - id: b\n    file: {path: /b, content: yy, mode: 04755}\n  - id: c\n    file: {path: /c, content: z, mode: \"0640\"}\n"))
	is.NoErr(err)
	is.Equal(m.Resources[0].File.Mode, "0600")
	is.Equal(m.Resources[1].File.Mode, "4755")
	is.Equal(m.Resources[2].File.Mode, "0640")
}

// TestParseManifestUnquotedModeRefused: a number without the leading 0 (644,
// and 420, which is 0644 in decimal) or that is no octal mode is refused,
// naming the field and saying to quote it.
func TestParseManifestUnquotedModeRefused(t *testing.T) {
	is := is.New(t)
	for _, v := range []string{"644", "420", "4755", "0648", "0x1a4", "420.0", "012345", "07"} {
		_, err := events.ParseManifest([]byte("resources:\n  - id: ok\n    file: {path: /ok, content: x}\n  - id: motd\n    file: {path: /etc/motd, content: x, mode: " + v + "}\n"))
		is.True(errors.Is(err, events.ErrInvalid))
		is.True(strings.Contains(err.Error(), "resources[1].file.mode: "+v+" written unquoted"))
		is.True(strings.Contains(err.Error(), `quote it, as in mode: "0644"`))
	}
	// A quoted bad mode keeps its own message.
	_, err := events.ParseManifest([]byte("resources:\n  - id: motd\n    file: {path: /etc/motd, content: x, mode: \"0648\"}\n"))
	is.True(errors.Is(err, events.ErrInvalid))
	is.True(strings.Contains(err.Error(), "file.mode"))
}
