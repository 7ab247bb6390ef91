package replay

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fleet-dev/fleet/events"
)

// Line is one event as `fleet replay` shows it: where and when the stream
// stored it, when and where it happened, and the essential payload.
type Line struct {
	Seq        uint64    `json:"seq"`
	StreamTime time.Time `json:"streamTime"`
	At         time.Time `json:"at"`
	Device     string    `json:"device"`
	Resource   string    `json:"resource,omitempty"`
	Type       string    `json:"type"`
	Generation int64     `json:"generation"`
	Summary    string    `json:"summary"`
	ID         string    `json:"id"`
	Actor      string    `json:"actor"`
}

// LineOf builds the Line of a stored event.
func LineOf(s events.Stored) Line {
	return Line{Seq: s.Seq, StreamTime: s.StreamTime, At: s.At, Device: s.Device, Resource: s.Resource,
		Type: s.Type, Generation: s.Generation, Summary: Summary(s.Event), ID: s.ID, Actor: s.Actor}
}

// Row is the line's table cells, in the order of Header.
func (l Line) Row() []string {
	st := "-"
	if !l.StreamTime.IsZero() {
		st = l.StreamTime.UTC().Format(timeLayout)
	}
	res := l.Resource
	if res == "" {
		res = "-"
	}
	return []string{fmt.Sprint(l.Seq), st, l.At.UTC().Format(timeLayout), l.Device, res, l.Type,
		fmt.Sprint(l.Generation), l.Summary}
}

// Header names the columns of Row.
var Header = []string{"SEQ", "STREAM TIME", "AT", "DEVICE", "RESOURCE", "TYPE", "GEN", "SUMMARY"}

const timeLayout = "2006-01-02T15:04:05.000Z"

// Summary is the essential payload of an event in one short line.
func Summary(e events.Event) string {
	p, err := e.Payload()
	if err != nil {
		return "undecodable payload: " + err.Error()
	}
	switch p := p.(type) {
	case *events.ManifestApplied:
		s := fmt.Sprintf("%d resources, digest %s", len(p.Manifest.Resources), short(p.Digest))
		if p.KeyID != "" {
			s += ", signed by " + p.KeyID
		}
		return s + ", by " + e.Actor
	case *events.ReconcileAttempted:
		s := fmt.Sprintf("%s attempt %d %s in %s", p.Kind, p.Attempt, p.Outcome, p.Duration.Round(time.Microsecond))
		if p.Changed {
			s += ", changed"
		}
		if p.Error != "" {
			s += ": " + p.Error
		}
		return s
	case *events.StatusChanged:
		from := p.From
		if from == "" {
			from = "(new)"
		}
		s := fmt.Sprintf("%s -> %s", from, p.To)
		if p.Trigger != "" {
			s += " (" + p.Trigger + ")"
		}
		if p.Reason != "" {
			s += " " + p.Reason
		}
		if p.Error != "" {
			s += ": " + p.Error
		}
		if p.RetryAfter != nil {
			s += ", retry after " + p.RetryAfter.UTC().Format(timeLayout)
		}
		return s
	case *events.DriftDetected:
		var d []string
		for _, x := range p.Differences {
			d = append(d, fmt.Sprintf("%s %q != %q", x.Field, x.Observed, x.Expected))
		}
		return fmt.Sprintf("%s drift (%s): %s", p.Kind, p.Policy, strings.Join(d, "; "))
	case *events.DeviceRegistered:
		var labels []string
		for k, v := range p.Labels {
			labels = append(labels, k+"="+v)
		}
		sort.Strings(labels)
		s := fmt.Sprintf("agent %s, kinds %s", p.AgentVersion, strings.Join(p.Kinds, ","))
		if len(labels) > 0 {
			s += ", labels " + strings.Join(labels, ",")
		}
		if p.ExecAllowed {
			s += ", exec allowed"
		}
		return s
	case *events.DeviceDeregistered:
		return "deregistered: " + p.Reason
	case *events.ManifestRejected:
		return fmt.Sprintf("generation %d rejected: %s; kept generation %d", p.Generation, p.Reason, p.KeptGeneration)
	}
	return ""
}

func short(digest string) string {
	if len(digest) > 12 {
		return digest[:12]
	}
	return digest
}
