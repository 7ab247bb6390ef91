package projections

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fleet-dev/fleet/events"
)

// ReadModel is one read model the service's runtime keeps: a fold of the
// log that persists itself as parts, one Pebble key per part an event can
// change, so that a batch re-encodes only what it touched. What it answers
// is its own type's methods, read through Query.
//
// The runtime calls Apply and Touch for every event in log order that
// decoded and was written by its writer (other messages are recorded as
// skipped and reach no model), Encode for the parts touched since the last
// write (in the same Pebble batch as the checkpoint), Parts for every part
// when it writes a rebuilt store whole, and Load for every stored part of
// its kinds when a store is opened: kind by kind in the order of Kinds, in
// key order within a kind (so a header kind listed first is loaded before
// the parts beneath it).
//
// A model is used by one goroutine at a time (the runtime holds its lock);
// a new read model is one type implementing this and one registration
// (WithModel, or the service's defaults in DefaultModels).
type ReadModel interface {
	// Kinds lists the part kinds the model owns, one letter each (a-z but
	// c, s and v, which the runtime uses), in load order. No two
	// registered models share a kind.
	Kinds() string
	// Apply folds one event.
	Apply(e events.Stored)
	// Touch adds to dirty the parts that applying e changes. A part that
	// did not change may be added: it is written again with the same bytes.
	Touch(e events.Stored, dirty Dirty)
	// Encode returns a part's stored value, false if the model no longer
	// holds it (the key is then deleted).
	Encode(p Part) ([]byte, bool)
	// Load restores one part from its stored value.
	Load(p Part, val []byte) error
	// Parts calls fn for every part the model holds.
	Parts(fn func(Part))
}

// Part names one persisted part of a read model: its Pebble key is
// <kind>/<device>[/<resource>].
type Part struct {
	Kind     byte
	Device   string
	Resource string
}

// Dirty is the set of parts changed since the models were last written.
type Dirty map[Part]struct{}

// Add adds p.
func (d Dirty) Add(kind byte, device, resource string) { d[Part{kind, device, resource}] = struct{}{} }

func (p Part) key() []byte {
	k := make([]byte, 0, 2+len(p.Device)+1+len(p.Resource))
	k = append(k, p.Kind, '/')
	k = append(k, p.Device...)
	if p.Resource != "" {
		k = append(k, '/')
		k = append(k, p.Resource...)
	}
	return k
}

// parsePart reads a part's key back, checking the ids in it.
func parsePart(key []byte) (Part, error) {
	k := string(key)
	if len(k) < 3 || k[1] != '/' {
		return Part{}, fmt.Errorf("key %q: not a read-model key", k)
	}
	dev, res, _ := strings.Cut(k[2:], "/")
	if !events.ValidID(dev) || (res != "" && !events.ValidID(res)) {
		return Part{}, fmt.Errorf("key %q: bad device or resource id", k)
	}
	return Part{k[0], dev, res}, nil
}

// ModelFactory makes an empty read model (the runtime makes a new one for
// every store it opens: on start, after a failed write, for a rebuild).
type ModelFactory func() ReadModel

// DefaultModels are the projection service's read models: the fleet state
// (Fleet) and the drift history (Drift).
func DefaultModels() []ModelFactory {
	return []ModelFactory{
		func() ReadModel { return NewFleet() },
		func() ReadModel { return NewDrift() },
	}
}

// baseKinds are the default models' kinds; a store of exactly these keeps
// the layout version "2" it had before models were pluggable.
const baseKinds = "fmgdr"

// modelSet is the registered models of one service: their kinds, checked
// once, and the layout version their stores carry.
type modelSet struct {
	factories []ModelFactory
	layout    string
	name      string // the runtime's (WithName), on its stores
}

func newModelSet(name string, fs []ModelFactory) (modelSet, error) {
	var kinds strings.Builder
	seen := map[byte]bool{}
	for _, f := range fs {
		for _, k := range []byte(f().Kinds()) {
			if k < 'a' || k > 'z' || k == 'c' || k == 's' || k == 'v' {
				return modelSet{}, fmt.Errorf("read model kind %q: must be a letter a-z other than c, s and v (the runtime's keys)", k)
			}
			if seen[k] {
				return modelSet{}, fmt.Errorf("read model kind %q: registered by two models; each kind names one model's parts", k)
			}
			seen[k] = true
			kinds.WriteByte(k)
		}
	}
	if len(fs) == 0 {
		return modelSet{}, errors.New("no read models: WithModels needs at least one")
	}
	set := modelSet{factories: fs, layout: layout, name: name}
	if kinds.String() != baseKinds {
		set.layout = layout + ":" + kinds.String()
	}
	return set, nil
}

// fresh makes one empty instance of every model.
func (ms modelSet) fresh() []ReadModel {
	out := make([]ReadModel, len(ms.factories))
	for i, f := range ms.factories {
		out[i] = f()
	}
	return out
}

// find returns the first of ms of type T.
func find[T ReadModel](ms []ReadModel) (T, bool) {
	for _, m := range ms {
		if t, ok := m.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// Query calls fn with the service's read model of type T, under the read
// lock (fn must not keep it), and reports whether such a model is
// registered. It is how a model's answers are read while the service runs.
func Query[T ReadModel](s *Service, fn func(T)) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.m == nil {
		return false
	}
	t, ok := find[T](s.m.set)
	if ok {
		fn(t)
	}
	return ok
}
