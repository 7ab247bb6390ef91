package jsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A read that feeds a compare-and-set must see every write the stream has
// acknowledged. A direct get (what nats.go uses for a stream with
// AllowDirect) may be answered by any replica, and a follower can be behind
// its leader: a manifest read there would make fleet apply expect an old
// sequence and fail with a conflict that no retry resolves, or (worse,
// against a lagging follower that answers "not found") start a device's
// history again at generation 1. So the last manifest is read with the
// stream's STREAM.MSG.GET API, which only the stream leader answers, after
// every write it acknowledged. nats.go picks direct get whenever the stream
// allows it and has no option to say otherwise, hence this request by hand.

// msgGetResponse is the STREAM.MSG.GET answer.
type msgGetResponse struct {
	Type  string `json:"type"`
	Error *struct {
		Code        int    `json:"code"`
		ErrorCode   int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message,omitempty"`
}

// apiPrefix is the JetStream API prefix s.js sends requests to.
func (s *Store) apiPrefix() string {
	o := s.js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// lastFromLeader returns the last message on subject as the stream leader
// has it: jetstream.ErrMsgNotFound if there is none.
func (s *Store) lastFromLeader(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	return retrying(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		reply, err := s.js.Conn().RequestWithContext(ctx, s.apiPrefix()+"STREAM.MSG.GET."+s.stream.CachedInfo().Config.Name, req)
		if err != nil {
			return nil, err
		}
		var resp msgGetResponse
		if err := json.Unmarshal(reply.Data, &resp); err != nil {
			return nil, fmt.Errorf("stream message get: %w", err)
		}
		if resp.Error != nil {
			if resp.Error.ErrorCode == int(jetstream.JSErrCodeMessageNotFound) {
				return nil, jetstream.ErrMsgNotFound
			}
			return nil, &jetstream.APIError{Code: resp.Error.Code, ErrorCode: jetstream.ErrorCode(resp.Error.ErrorCode), Description: resp.Error.Description}
		}
		if resp.Message == nil {
			return nil, jetstream.ErrInvalidJetStreamResponse
		}
		m := resp.Message
		return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Data: m.Data, Time: m.Time}, nil
	})
}

// replicated reports whether the stream has followers (as it was when the
// store attached).
func (s *Store) replicated() bool {
	info := s.stream.CachedInfo()
	return info != nil && info.Config.Replicas > 1
}
