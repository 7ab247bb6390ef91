package jsstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/matryer/is"
	"github.com/nats-io/nats.go/jetstream"
)

// TestCreateConsumerMakesAnUnansweredRequestAgain: a try whose answer never
// comes (what a just-restarted cluster node can do, see
// TestClusterAuthDevicesConverge) is given up after ConsumerCreateTimeout
// and made again; an answer that is an error is returned at once; the
// caller's context bounds the whole. The tries here are functions of the
// test's own, standing in for the request: what is under test is the loop
// around it (the cluster test drives the real request).
func TestCreateConsumerMakesAnUnansweredRequestAgain(t *testing.T) {
	is := is.New(t)
	defer func(d time.Duration) { ConsumerCreateTimeout = d }(ConsumerCreateTimeout)
	ConsumerCreateTimeout = 50 * time.Millisecond

	tries := 0
	_, err := createConsumer(context.Background(), func(ctx context.Context) (jetstream.Consumer, error) {
		tries++
		if tries < 3 {
			<-ctx.Done() // never answered
			return nil, unavailable(ctx.Err())
		}
		return nil, nil // answered
	})
	is.NoErr(err)
	is.Equal(tries, 3) // two unanswered tries, then the answer

	tries = 0
	refused := errors.New("consumer config is invalid")
	_, err = createConsumer(context.Background(), func(ctx context.Context) (jetstream.Consumer, error) {
		tries++
		return nil, refused
	})
	is.True(errors.Is(err, refused)) // an answer that is an error
	is.Equal(tries, 1)               // is not asked again

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = createConsumer(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		<-ctx.Done()
		return nil, unavailable(ctx.Err())
	})
	is.True(errors.Is(err, context.DeadlineExceeded))
	is.True(time.Since(start) < 2*time.Second) // the caller's deadline ends it
}
