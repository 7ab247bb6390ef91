package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matryer/is"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/eventstest"
	"github.com/fleet-dev/fleet/fixtures"
	"github.com/fleet-dev/fleet/projections"
	"github.com/fleet-dev/fleet/projections/api"
)

// syncBuf is a log buffer the service's goroutines write while the test reads.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func body(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestConsumerFailuresAreLoggedCountedAndAStallFailsHealthz: on a real
// server, a consumer that is lost (deleted under the service) is logged
// with its cause and counted in /metrics; a service that stops advancing
// while the stream grows makes /healthz answer 503 saying so, and 200 again
// once it has caught up.
func TestConsumerFailuresAreLoggedCountedAndAStallFailsHealthz(t *testing.T) {
	is := is.New(t)
	old := projections.LogCheckInterval
	projections.LogCheckInterval = 100 * time.Millisecond
	t.Cleanup(func() { projections.LogCheckInterval = old })
	env := eventstest.Start(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	evs := fixtures.GenerateLog(31, fixtures.Options{Devices: 3, Events: 600})
	is.NoErr(env.Store.AppendBatch(ctx, evs[:200]))
	var logs syncBuf
	svc, err := projections.Open(t.TempDir(), projections.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	is.NoErr(err)
	var pause sync.Mutex // held: the service's fold blocks after its next batch
	svc.OnBatch(func(projections.BatchInfo) { pause.Lock(); pause.Unlock() })
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, env.Store) }()
	a := api.NewServer(svc, env.Store, time.Minute, api.WithMaxStall(500*time.Millisecond))
	is.NoErr(a.Start(ctx))
	mux := http.NewServeMux()
	a.Routes(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		cancel()
		<-done
		svc.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	is.NoErr(svc.WaitFor(wctx, 200))

	// the consumer is lost: logged with its cause, counted, and the service goes on
	is.NoErr(env.JS.DeleteConsumer(ctx, events.Stream, projections.DefaultDurable))
	eventstest.WaitFor(t, 20*time.Second, "the failure to be logged", func() bool {
		return strings.Contains(logs.String(), "consuming the log failed")
	})
	is.True(strings.Contains(logs.String(), `nats: consumer deleted"`)) // the cause
	is.True(svc.Stats().Failures >= 1)
	_, metrics := body(t, hs.URL+"/metrics")
	is.True(strings.Contains(metrics, "fleet_projection_consumer_failures_total 1"))
	is.NoErr(env.Store.AppendBatch(ctx, evs[200:300]))
	is.NoErr(svc.WaitFor(wctx, 300)) // started again from its checkpoint
	code, _ := body(t, hs.URL+"/healthz")
	is.Equal(code, 200)
	eventstest.WaitFor(t, 5*time.Second, "the recovery to be logged", func() bool {
		return strings.Contains(logs.String(), "recovered")
	})

	// the service stops advancing while the stream grows: /healthz says so
	pause.Lock()
	is.NoErr(env.Store.AppendBatch(ctx, evs[300:400])) // its batch blocks the fold
	is.NoErr(env.Store.AppendBatch(ctx, evs[400:]))
	var got map[string]any
	eventstest.WaitFor(t, 20*time.Second, "/healthz to answer 503", func() bool {
		code, b := body(t, hs.URL+"/healthz")
		got = nil
		_ = json.Unmarshal([]byte(b), &got)
		return code == http.StatusServiceUnavailable
	})
	reason, _ := got["reason"].(string)
	is.True(strings.Contains(reason, "projections-advancing: the read models have not advanced for"))
	is.True(strings.Contains(reason, "while the stream has reached sequence 600"))
	action, _ := got["action"].(string)
	is.True(strings.Contains(action, "consuming the log failed"))

	pause.Unlock()
	is.NoErr(svc.WaitFor(wctx, 600))
	code, _ = body(t, hs.URL+"/healthz")
	is.Equal(code, 200)
}
