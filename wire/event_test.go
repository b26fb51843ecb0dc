package wire_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/wire"
)

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   wire.Event
		want wire.Event
	}{
		{"every attribute survives encode and decode",
			wire.Event{ID: "ev-1", Source: "/switchboard/trips", Type: "trip.requested", Subject: "trip-42",
				Time: time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC), DataContentType: wire.ContentTypeProto},
			wire.Event{ID: "ev-1", Source: "/switchboard/trips", Type: "trip.requested", Subject: "trip-42",
				Time: time.Date(2025, 3, 4, 5, 6, 7, 890123456, time.UTC), DataContentType: wire.ContentTypeProto}},
		{"a time in another zone arrives as the same instant",
			wire.Event{ID: "ev-2", Source: "s", Type: "t", Time: time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("CET", 3600))},
			wire.Event{ID: "ev-2", Source: "s", Type: "t", Time: time.Date(2025, 3, 4, 4, 6, 7, 0, time.UTC), DataContentType: wire.ContentTypeJSON}},
		{"an event without optional attributes has JSON data",
			wire.Event{ID: "ev-3", Source: "s", Type: "t"},
			wire.Event{ID: "ev-3", Source: "s", Type: "t", DataContentType: wire.ContentTypeJSON}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bus.Header{}
			tt.in.Encode(h)
			if h[wire.HeaderCESpecVersion] != "1.0" {
				t.Errorf("%s = %q, want 1.0", wire.HeaderCESpecVersion, h[wire.HeaderCESpecVersion])
			}
			got, err := wire.DecodeEvent(h)
			if err != nil {
				t.Fatalf("DecodeEvent: %v", err)
			}
			if !got.Time.Equal(tt.want.Time) {
				t.Errorf("Time = %v, want %v", got.Time, tt.want.Time)
			}
			got.Time, tt.want.Time = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("DecodeEvent = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeEventErrors(t *testing.T) {
	valid := func() bus.Header {
		h := bus.Header{}
		(&wire.Event{ID: "ev-1", Source: "/switchboard/trips", Type: "trip.requested", Time: time.Now()}).Encode(h)
		return h
	}
	tests := []struct {
		name   string
		change func(bus.Header)
		want   string // the attribute the error must name
	}{
		{"a missing id is named", func(h bus.Header) { delete(h, wire.HeaderCEID) }, wire.HeaderCEID},
		{"a missing source is named", func(h bus.Header) { delete(h, wire.HeaderCESource) }, wire.HeaderCESource},
		{"a missing type is named", func(h bus.Header) { delete(h, wire.HeaderCEType) }, wire.HeaderCEType},
		{"a missing specversion is named", func(h bus.Header) { delete(h, wire.HeaderCESpecVersion) }, wire.HeaderCESpecVersion},
		{"an empty id is as good as missing", func(h bus.Header) { h[wire.HeaderCEID] = "" }, wire.HeaderCEID},
		{"an old specversion is named", func(h bus.Header) { h[wire.HeaderCESpecVersion] = "0.3" }, wire.HeaderCESpecVersion},
		{"a malformed time is named", func(h bus.Header) { h[wire.HeaderCETime] = "yesterday" }, wire.HeaderCETime},
		{"a time with no RFC 3339 form in UTC is named", func(h bus.Header) { h[wire.HeaderCETime] = "0000-01-01T00:00:00+01:00" }, wire.HeaderCETime},
		{"with several attributes missing the first in order is named every time", func(h bus.Header) {
			delete(h, wire.HeaderCEID)
			delete(h, wire.HeaderCESource)
			delete(h, wire.HeaderCEType)
		}, wire.HeaderCEID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 20 { // map order must not change which attribute is named
				h := valid()
				tt.change(h)
				_, err := wire.DecodeEvent(h)
				if bus.ErrorCode(err) != bus.InvalidArgument {
					t.Fatalf("DecodeEvent = %v, want InvalidArgument", err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %q does not name %s", err, tt.want)
				}
			}
		})
	}
}

func TestOtherHeadersLeaveOutTheShownAttributes(t *testing.T) {
	h := bus.Header{
		wire.HeaderCEID: "1", wire.HeaderCESource: "/s", wire.HeaderCESpecVersion: "1.0", wire.HeaderCEType: "t",
		wire.HeaderCESubject: "x", wire.HeaderCETime: "2026-12-01T00:00:00Z", wire.HeaderContentType: wire.ContentTypeJSON,
		bus.HeaderDeadReason: "boom", "traceparent": "00-abc",
	}
	got := wire.OtherHeaders(h)
	if len(got) != 2 || got[bus.HeaderDeadReason] != "boom" || got["traceparent"] != "00-abc" {
		t.Fatalf("OtherHeaders = %v, want only the dead-letter reason and traceparent", got)
	}
	if got := wire.OtherHeaders(bus.Header{wire.HeaderCEID: "1"}); got != nil {
		t.Fatalf("OtherHeaders of attributes only = %v, want nil", got)
	}
}
