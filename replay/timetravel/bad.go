package timetravel

import (
	"errors"

	"github.com/fleet-dev/fleet/events"
)

func isBad(err error) bool {
	var bm *events.BadMessage
	return errors.As(err, &bm)
}
