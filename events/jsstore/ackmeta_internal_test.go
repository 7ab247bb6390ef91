package jsstore

import (
	"testing"

	"github.com/matryer/is"
)

func TestAckMetadataReadsWhatMetadataReads(t *testing.T) {
	is := is.New(t)
	for _, c := range []struct {
		reply              string
		seq, pending, nsec uint64
		ok                 bool
	}{
		{"$JS.ACK.FLEET.c1.1.42.7.1700000000123456789.99", 42, 99, 1700000000123456789, true},
		{"$JS.ACK._.ACCHASH.FLEET.c1.1.42.7.1700000000123456789.99.tok", 42, 99, 1700000000123456789, true},
		{"$JS.ACK.dom.ACCHASH.FLEET.c1.1.42.7.1700000000123456789.0", 42, 0, 1700000000123456789, true},
		{"$JS.ACK.FLEET.c1.1.x.7.1.2", 0, 0, 0, false},          // not a number
		{"$JS.ACK.FLEET.c1.1.42.7.1", 0, 0, 0, false},           // too few tokens
		{"$JS.ACK.a.b.FLEET.c1.1.42.7.1.2.t.u", 0, 0, 0, false}, // too many
		{"_INBOX.x", 0, 0, 0, false},
	} {
		seq, pending, at, ok := ackMetadata(c.reply)
		is.Equal(ok, c.ok) // form known
		if ok {
			is.Equal(seq, c.seq)
			is.Equal(pending, c.pending)
			is.Equal(uint64(at.UnixNano()), c.nsec)
		}
	}
}
