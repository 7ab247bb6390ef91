package main

import (
	"context"
	"time"

	"github.com/fleet-dev/fleet/projections/api"
)

func init() {
	addServerPart("jetstream health", func(ctx context.Context, env *ServerEnv) (func(), error) {
		if env.Health == nil {
			return nil, nil
		}
		if srv := env.Embedded; srv != nil {
			env.Health.add(func() api.Check {
				h := srv.Health()
				return api.Check{Name: "jetstream", OK: h.OK, Reason: h.Reason, Action: h.Action, Detail: h}
			})
			return nil, nil
		}
		// an outside server or cluster: JetStream must answer for the account
		env.Health.add(func() api.Check {
			actx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := env.JS.AccountInfo(actx); err != nil {
				return api.Check{Name: "jetstream", Reason: "JetStream does not answer: " + err.Error(),
					Action: "see the NATS servers' logs and health (nats server check jetstream); a full disk disables JetStream"}
			}
			return api.Check{Name: "jetstream", OK: true}
		})
		return nil, nil
	})
}
