package main

import (
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/matryer/is"
	"github.com/nats-io/nats-server/v2/server"
)

// TestDeployConfigsSayWhatTheREADMEPromises: the nats-server configs in
// deploy/nats parse, the hub nodes fsync before every ack, share domain
// "hub" and one cluster of 3 routes, accept leaf nodes; the site config
// has the leaf settings fleet site builds (siteServerOptions), and all allow
// as many open atomic batches as the embedded server does, so the file
// a user reads is what the code runs.
func TestDeployConfigsSayWhatTheREADMEPromises(t *testing.T) {
	is := is.New(t)
	for i := 1; i <= 3; i++ {
		o, err := server.ProcessConfigFile(fmt.Sprintf("../../deploy/nats/cluster-node-%d.conf", i))
		is.NoErr(err)
		is.Equal(o.ServerName, fmt.Sprintf("hub-%d", i))
		is.True(o.SyncAlways)
		is.Equal(o.JetStreamDomain, "hub")
		is.Equal(o.Cluster.Name, "fleet")
		is.Equal(len(o.Routes), 3)
		is.True(o.LeafNode.Port > 0)
		is.Equal(o.MaxPayload, int32(2<<20))
		is.Equal(o.JetStreamLimits.MaxBatchInflightPerStream, 1000) // as the embedded server
		is.Equal(o.JetStreamLimits.MaxBatchInflightTotal, 1000)
	}
	o, err := server.ProcessConfigFile("../../deploy/nats/site.conf")
	is.NoErr(err)
	is.True(o.SyncAlways)
	is.Equal(o.JetStreamDomain, "shop-1")
	is.Equal(o.JetStreamLimits.MaxBatchInflightPerStream, 1000)
	is.Equal(len(o.LeafNode.Remotes), 1)
	want := &server.Options{}
	siteServerOptions(want, "shop-1", []*url.URL{{Scheme: "nats-leaf", Host: "127.0.0.1:7422"}})
	got, exp := o.LeafNode.Remotes[0], want.LeafNode.Remotes[0]
	is.Equal(got.DenyExports, exp.DenyExports)
	slices.Sort(got.DenyImports)
	slices.Sort(exp.DenyImports)
	is.Equal(got.DenyImports, exp.DenyImports)
	is.Equal(o.LeafNode.ReconnectInterval, want.LeafNode.ReconnectInterval)
}
