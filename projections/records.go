package projections

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/fleet-dev/fleet/events"
)

// RecordModel is a read model that writes its own records instead of (or
// beside) the runtime's parts: an index whose keys are not
// <kind>/<device>[/<resource>], such as the time-travel index (positions
// and snapshots per device, replay/timetravel). The runtime runs it as any
// model: Apply for every event in log order, its records written in the
// same Pebble batch as the checkpoint, loaded again when a store is opened
// or a write failed, rebuilt beside the live store and swapped. Embed
// NoParts for the part methods when it has no parts.
//
// Its keys begin with one of its Kinds letters (the runtime's own keys c,
// v and s/ and other models' kinds are not its to write).
type RecordModel interface {
	ReadModel
	// WriteRecords adds what was applied since the last write to b, the
	// batch that carries the checkpoint; the records are not yet stored.
	// An error writes nothing: the models are loaded again (LoadRecords)
	// from the store, which is at the last checkpoint.
	WriteRecords(b *pebble.Batch) error
	// Committed says that the last WriteRecords' batch is stored: what it
	// held may now be answered from the store. On a live store it is
	// called under the runtime's write lock, so readers (Query) see the
	// records and the checkpoint move together.
	Committed()
	// LoadRecords loads the model from the store it is for (empty: a new
	// store). The model may keep db to read its records when it answers
	// (under Query); it must write only through WriteRecords. An error
	// that is not the store's own says the records are damaged: the store
	// is then started again from the log (as a part that does not decode).
	LoadRecords(db *pebble.DB) error
}

// NoParts is the part methods of a read model that has no parts (a
// RecordModel that writes only records): embed it.
type NoParts struct{}

// Touch notes no part.
func (NoParts) Touch(events.Stored, Dirty) {}

// Encode holds no part.
func (NoParts) Encode(Part) ([]byte, bool) { return nil, false }

// Load refuses a part: the model stores none.
func (NoParts) Load(p Part, _ []byte) error {
	return fmt.Errorf("key %q: this read model stores no parts", p.key())
}

// Parts has none.
func (NoParts) Parts(func(Part)) {}

// DefaultName is the projection service's name in its messages and on its
// store (WithName).
const DefaultName = "read models"

// WithModels runs exactly these read models instead of the defaults
// (DefaultModels): a runtime of other models, such as the time-travel
// index. WithModel adds to what is set by then.
func WithModels(fs ...ModelFactory) Option {
	return func(s *Service) { s.factories = append([]ModelFactory(nil), fs...) }
}

// WithName names the runtime in its messages, its store's messages and its
// failure log (default DefaultName, "read models"; the time-travel index
// is "time-travel index").
func WithName(name string) Option { return func(s *Service) { s.name = name } }

// WithLogAction sets what the runtime's health tells an operator to do when
// the log no longer holds what the store has taken in (default
// RebuildAction: rebuild the projection service's read models).
func WithLogAction(action string) Option { return func(s *Service) { s.logAction = action } }

// the is the runtime's name as a sentence's subject ("the read models").
func (s *Service) the() string { return "the " + s.name }

// verb picks a verb's form for the name: plural if it ends in s.
func (s *Service) verb(plural, singular string) string {
	if strings.HasSuffix(s.name, "s") {
		return plural
	}
	return singular
}

// failureText is what the runtime's failure log says.
func (s *Service) failureText() string {
	if s.name == DefaultName {
		return "projections: consuming the log failed; the service starts again from its checkpoint every second, and the read models lag until it does"
	}
	return s.name + ": following the log failed; it resumes from its checkpoint every second, and its answers lag until it does"
}

// records are m's record models (RecordModel), in registration order.
func (m *models) records() []RecordModel {
	var out []RecordModel
	for _, rm := range m.set {
		if r, ok := rm.(RecordModel); ok {
			out = append(out, r)
		}
	}
	return out
}

// writeRecords adds every record model's records to b.
func (m *models) writeRecords(b *pebble.Batch) error {
	for _, r := range m.recs {
		if err := r.WriteRecords(b); err != nil {
			return err
		}
	}
	return nil
}

// committed tells every record model its records are stored.
func (m *models) committed() {
	for _, r := range m.recs {
		r.Committed()
	}
}

// loadRecords loads a record model; its errors other than the store's say
// the records are damaged.
func (m *models) loadRecords(r RecordModel) error {
	err := r.LoadRecords(m.db)
	if err == nil || errors.Is(err, pebble.ErrClosed) || pebble.IsCorruptionError(err) {
		return err // the store's own: damaged() tells corruption apart
	}
	return fmt.Errorf("%w: %w", errBadPart, err)
}
