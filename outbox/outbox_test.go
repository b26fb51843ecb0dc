package outbox_test

import (
	"context"
	"strings"
	"testing"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/outbox"
	"github.com/switchboard-dev/switchboard/wire"
)

func TestPrepareValidatesAndCompletesTheEvent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		msg     outbox.Message
		source  string
		wantErr string
	}{
		{name: "an empty topic is refused", msg: outbox.Message{}, source: "/s", wantErr: "invalid topic"},
		{name: "a topic with a space is refused", msg: outbox.Message{Topic: "trip ended"}, source: "/s", wantErr: "invalid topic"},
		{name: "a reserved topic is refused", msg: outbox.Message{Topic: "_dlq.x"}, source: "/s", wantErr: "invalid topic"},
		{name: "an event without a source is refused", msg: outbox.Message{Topic: "trip.ended"}, wantErr: "has no source"},
		{name: "a message's own source wins", msg: outbox.Message{Topic: "trip.ended", Event: wire.Event{Source: "/mine"}}, source: "/s"},
		{name: "defaults are filled in", msg: outbox.Message{Topic: "trip.ended"}, source: "/s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := outbox.Prepare(tc.msg, tc.source)
			if tc.wantErr != "" {
				if bus.ErrorCode(err) != bus.InvalidArgument || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want InvalidArgument with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ev, err := wire.DecodeEvent(r.Header)
			if err != nil {
				t.Fatalf("the record's headers are not a CloudEvent: %v", err)
			}
			if ev.ID == "" || ev.ID != r.ID || ev.Type != "trip.ended" || ev.Time.IsZero() {
				t.Fatalf("event %+v, record id %q", ev, r.ID)
			}
			want := tc.source
			if tc.msg.Event.Source != "" {
				want = tc.msg.Event.Source
			}
			if ev.Source != want {
				t.Fatalf("source %q, want %q", ev.Source, want)
			}
			if m := r.Message(); m.ID != r.ID || m.Subject != "trip.ended" {
				t.Fatalf("bus message %+v: want the event id as message id", m)
			}
		})
	}
}

func TestEventEncodesLikePublishAndKeysOnTheSubject(t *testing.T) {
	m, err := outbox.Event(context.Background(), TripEndedTopic, &TripEnded{Trip: "t-1", FareCents: 5},
		switchboard.WithEventID("ev-1"), switchboard.WithSubject("t-1"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "trip.ended" || m.Key != "t-1" || m.Event.ID != "ev-1" || m.Event.DataContentType != "application/json" ||
		string(m.Body) != `{"trip":"t-1","fare_cents":5}` {
		t.Fatalf("message %+v body %s", m, m.Body)
	}
}

func TestRelayNeedsAStoreAndAPublisher(t *testing.T) {
	var r outbox.Relay
	if err := r.Run(context.Background()); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Fatalf("Run of an empty relay: %v", err)
	}
	if _, err := r.RelayOnce(context.Background()); bus.ErrorCode(err) != bus.InvalidArgument {
		t.Fatalf("RelayOnce of an empty relay: %v", err)
	}
}
