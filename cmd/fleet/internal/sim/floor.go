package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/fleet-dev/fleet/events"
	"github.com/fleet-dev/fleet/events/jsstore"
)

// floorStream is the stream the raw floor publishes to: FLEET's settings
// under another name and subjects, deleted afterwards, so the floor leaves
// the fleet's log alone.
const floorStream = "SIMFLOOR"

// floor measures the raw floor of a rollout on the same server, right after
// it: bare clients (a pool of plain NATS connections) append one
// compare-and-set message per device (64 at a time, as the simulator
// appends manifests), then each device's agent events in the very batch
// sizes its outbox used (atomic batches, a batch of one as a plain
// publish), with payloads of the rollout's own event sizes, every device
// at once. No agent work (diff, state machines, files, local store) is in
// it: what is left is the log's own cost.
func (s *sim) floor(ctx context.Context, ro *ReadyStats) (*Floor, error) {
	shapes := make([][]int, len(s.devs))
	fl := &Floor{Manifests: len(s.devs), Note: "bare clients, same server, same batch shapes, measured right after the rollout"}
	for i, d := range s.devs {
		shapes[i] = d.takeBatches()
		for _, n := range shapes[i] {
			fl.Events += n
			fl.Batches++
		}
	}
	manifestSize, eventSize, err := s.sampleSizes(ctx)
	if err != nil {
		return nil, err
	}
	str, err := s.js.Stream(ctx, events.Stream)
	if err != nil {
		return nil, err
	}
	info, err := str.Info(ctx)
	if err != nil {
		return nil, err
	}
	cfg := info.Config
	cfg.Name, cfg.Subjects, cfg.Description = floorStream, []string{"simfloor.>"}, "fleet sim: raw floor (deleted after the run)"
	cfg.DenyDelete, cfg.DenyPurge = false, false
	if _, err := s.js.CreateStream(ctx, cfg); err != nil {
		return nil, fmt.Errorf("floor stream: %w", err)
	}
	defer func() { _ = s.js.DeleteStream(context.Background(), floorStream) }()

	pool := make([]jetstream.JetStream, min(len(s.devs), 100))
	for i := range pool {
		nc, err := nats.Connect(s.nc.ConnectedUrl(), s.controlOptions()...)
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		if pool[i], err = jetstream.New(nc); err != nil {
			return nil, err
		}
	}
	manifest := bytes.Repeat([]byte("m"), manifestSize)
	payload := bytes.Repeat([]byte("e"), eventSize)
	sem := make(chan struct{}, 64)
	batches := make(chan struct{}, maxInflightBatches)
	manifestMsg := func(dev string) *nats.Msg {
		m := nats.NewMsg("simfloor." + dev + ".manifest")
		m.Data = manifest
		m.Header.Set(jetstream.MsgIDHeader, dev+"-manifest")
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		return m
	}
	// As the rollout appended them: with ApplyMany, events.ManyBatch
	// publishes pipelined at a time, a device's events sent once its
	// manifest's group is in; with Apply, a publish a device, 64 at a time.
	fl.ManifestBatch = 1
	var chunkDone []chan struct{}
	var chunkErr error
	if !s.cfg.ApplyEach {
		fl.ManifestBatch = events.ManyBatch
		chunkDone = make([]chan struct{}, (len(s.devs)+events.ManyBatch-1)/events.ManyBatch)
		for k := range chunkDone {
			chunkDone[k] = make(chan struct{})
		}
	}
	start := time.Now()
	if chunkDone != nil {
		go func() {
			for k := range chunkDone {
				if chunkErr == nil {
					chunkErr = publishPipelined(ctx, s.js, s.devs[k*events.ManyBatch:min((k+1)*events.ManyBatch, len(s.devs))], manifestMsg)
				}
				close(chunkDone[k])
			}
		}()
	}
	err = parallel(len(s.devs), len(s.devs), func(i int) error {
		js := pool[i%len(pool)]
		dev := s.devs[i].id
		pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if chunkDone != nil {
			<-chunkDone[i/events.ManyBatch]
			if chunkErr != nil {
				return chunkErr
			}
		} else {
			sem <- struct{}{}
			_, err := js.PublishMsg(pctx, manifestMsg(dev))
			<-sem
			if err != nil {
				return fmt.Errorf("floor manifest %s: %w", dev, err)
			}
		}
		var err error
		for b, n := range shapes[i] {
			msgs := make([]*nats.Msg, n)
			for k := range msgs {
				msgs[k] = nats.NewMsg(fmt.Sprintf("simfloor.%s.status.f%d", dev, k%s.cfg.Resources))
				msgs[k].Data = payload
				msgs[k].Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d-%d", dev, b, k))
			}
			if n == 1 {
				_, err = js.PublishMsg(pctx, msgs[0])
			} else {
				err = publishBatch(pctx, js, msgs, batches)
			}
			if err != nil {
				return fmt.Errorf("floor batch %d of %s: %w", b, dev, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	fl.Ms = ms(time.Since(start))
	if fl.Ms > 0 {
		fl.Ratio = ro.All / fl.Ms
	}
	s.log("raw floor: %d manifests + %d events in %d batches in %.0f ms (rollout %.2fx)", fl.Manifests, fl.Events, fl.Batches, fl.Ms, fl.Ratio)
	return fl, nil
}

// sampleSizes returns the encoded size of the first device's last manifest
// and the mean encoded size of its agent events in the last generation.
func (s *sim) sampleSizes(ctx context.Context) (manifest, event int, err error) {
	dev := s.devs[0].id
	total, n := 0, 0
	for st, err := range s.st.Read(ctx, events.Filter{Device: dev}) {
		if err != nil {
			return 0, 0, err
		}
		enc, err := jsstore.EncodedOf(st.Event)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case st.Type == events.TypeManifestApplied:
			manifest = len(enc.Data)
		case st.Generation == s.gen:
			total += len(enc.Data)
			n++
		}
	}
	if n == 0 {
		return manifest, 300, nil
	}
	return manifest, total / n, nil
}

// publishPipelined publishes one manifest a device, all in flight at once,
// and waits for every answer.
func publishPipelined(ctx context.Context, js jetstream.JetStream, devs []*device, msg func(string) *nats.Msg) error {
	fs := make([]jetstream.PubAckFuture, len(devs))
	for i, d := range devs {
		f, err := js.PublishMsgAsync(msg(d.id))
		if err != nil {
			return fmt.Errorf("floor manifest %s: %w", d.id, err)
		}
		fs[i] = f
	}
	wait, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for i, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("floor manifest %s: %w", devs[i].id, err)
		case <-wait.Done():
			return fmt.Errorf("floor manifest %s: no answer", devs[i].id)
		}
	}
	return nil
}

// maxInflightBatches keeps the floor under the server's limit of atomic
// batches in flight on a stream (it refuses more with 429 "atomic publish
// too many inflight").
const maxInflightBatches = 40

// publishBatch publishes an atomic batch, at most maxInflightBatches at a
// time, and retries one the server refused as too many in flight.
func publishBatch(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg, slots chan struct{}) error {
	for {
		slots <- struct{}{}
		_, err := jetstreamext.PublishMsgBatch(ctx, js, msgs)
		<-slots
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errTooManyInflight {
			if serr := sleep(ctx, 5*time.Millisecond); serr != nil {
				return err
			}
			continue
		}
		return err
	}
}

// errTooManyInflight is JetStream's error code for "atomic publish too many
// inflight".
const errTooManyInflight = 10210
