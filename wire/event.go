package wire

import (
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// CloudEvents attributes in binary content mode: each attribute is a header
// "ce-<name>", the data is the message body and its encoding is Content-Type.
const (
	HeaderCEID          = "ce-id"
	HeaderCESource      = "ce-source"
	HeaderCESpecVersion = "ce-specversion"
	HeaderCEType        = "ce-type"
	HeaderCESubject     = "ce-subject"
	HeaderCETime        = "ce-time"
	HeaderCEDataSchema  = "ce-dataschema"
	// HeaderReplay marks an event re-published from a dead-letter topic.
	HeaderReplay = "Sb-Replay"
)

// Event holds the CloudEvents attributes of an event. ID is the idempotency
// key: redeliveries and duplicate publishes of one event share it.
type Event struct {
	ID              string
	Source          string // the publishing service, e.g. "/switchboard/trips"
	Type            string // the topic, e.g. "trip.requested"
	Subject         string // optional: what the event is about, e.g. a trip id
	Time            time.Time
	DataContentType string
}

// Encode writes the attributes into h ("ce-specversion" is always "1.0").
// Time is written in UTC, so it must lie within the years 0 to 9999 there.
func (e *Event) Encode(h bus.Header) {
	h[HeaderCESpecVersion] = "1.0"
	h[HeaderCEID] = e.ID
	h[HeaderCESource] = e.Source
	h[HeaderCEType] = e.Type
	if e.Subject != "" {
		h[HeaderCESubject] = e.Subject
	}
	if !e.Time.IsZero() {
		h[HeaderCETime] = e.Time.UTC().Format(time.RFC3339Nano)
	}
	if e.DataContentType != "" {
		h[HeaderContentType] = e.DataContentType
	}
}

// DecodeEvent reads CloudEvents attributes from h. Missing required
// attributes (id, source, type, specversion 1.0) or a malformed time are
// InvalidArgument errors naming the attribute.
func DecodeEvent(h bus.Header) (Event, error) {
	e := Event{
		ID:              h[HeaderCEID],
		Source:          h[HeaderCESource],
		Type:            h[HeaderCEType],
		Subject:         h[HeaderCESubject],
		DataContentType: normalize(h[HeaderContentType]),
	}
	if v := h[HeaderCESpecVersion]; v != "1.0" {
		return e, bus.Errorf(bus.InvalidArgument, "wire: event header %s=%q: want \"1.0\"", HeaderCESpecVersion, v)
	}
	// In a fixed order, so that the same headers always give the same error.
	for _, k := range [...]string{HeaderCEID, HeaderCESource, HeaderCEType} {
		if h[k] == "" {
			return e, bus.Errorf(bus.InvalidArgument, "wire: event is missing required header %s", k)
		}
	}
	if s := h[HeaderCETime]; s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		// A time near year 0 or 9999 can parse with its offset yet have no
		// RFC 3339 form in UTC, which is how Encode would pass it on.
		if y := t.UTC().Year(); err != nil || y < 0 || y > 9999 {
			return e, bus.Errorf(bus.InvalidArgument, "wire: event header %s=%q: want an RFC 3339 time", HeaderCETime, s)
		}
		e.Time = t
	}
	return e, nil
}

// shownAttributes are the headers that event viewers show as CloudEvents
// attributes of their own rather than as extra headers.
var shownAttributes = map[string]bool{
	HeaderCEID: true, HeaderCESource: true, HeaderCESpecVersion: true, HeaderCEType: true,
	HeaderCESubject: true, HeaderCETime: true, HeaderContentType: true,
}

// OtherHeaders returns the headers of an event beyond ce-id, ce-source,
// ce-specversion, ce-type, ce-subject, ce-time and Content-Type (for
// example the Sb-Dead-* headers of a dead letter), or nil when there are
// none: what `switchboard watch` and the dashboard list as extra headers.
func OtherHeaders(h bus.Header) map[string]string {
	var out map[string]string
	for k, v := range h {
		if !shownAttributes[k] {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
