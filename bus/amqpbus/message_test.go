package amqpbus

import (
	"maps"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// delivered is p as a consumer receives it: the properties, with the
// timestamp in whole seconds as AMQP carries it.
func delivered(p amqp.Publishing) *amqp.Delivery {
	d := &amqp.Delivery{Headers: p.Headers, ContentType: p.ContentType, CorrelationId: p.CorrelationId, ReplyTo: p.ReplyTo,
		Expiration: p.Expiration, MessageId: p.MessageId, Type: p.Type, AppId: p.AppId, Body: p.Body}
	if !p.Timestamp.IsZero() {
		d.Timestamp = time.Unix(p.Timestamp.Unix(), 0)
	}
	return d
}

// FuzzHeadersRoundTrip: whatever headers a message of any kind has, the
// properties and table it is published with give them back exactly, and an
// envelope or event header leaves the table only for a property.
func FuzzHeadersRoundTrip(f *testing.F) {
	f.Add(uint8(kindRequest), "", int64(5000), "Sb-Timeout", "4999", "Sb-Caller", "checkout", "Content-Type", "application/json")
	f.Add(uint8(kindRequest), "", int64(5000), "Sb-Timeout", "05", "Sb-Caller", "", "X", "y")
	f.Add(uint8(kindRequest), "", int64(-1), "Sb-Timeout", "5", "sb-timeout", "5", "", "")
	f.Add(uint8(kindRequest), "", int64(3), "Sb-Timeout", "4", "Sb-Amqp-No-Timeout", "1", "", "")
	f.Add(uint8(kindReply), "", int64(-1), "Sb-Instance", "trips-1", "Sb-Caller", "x", "Sb-Timeout", "1")
	f.Add(uint8(kindEvent), "ev-1", int64(-1), "ce-specversion", "1.0", "ce-type", "trip.requested", "ce-id", "ev-1")
	f.Add(uint8(kindEvent), "ev-1", int64(-1), "ce-specversion", "1.0", "ce-type", "t", "ce-time", "2026-12-01T21:41:07Z")
	f.Add(uint8(kindEvent), "", int64(-1), "ce-specversion", "1.0", "ce-type", "t", "ce-time", "1970-01-01T00:00:00.000Z")
	f.Add(uint8(kindEvent), "", int64(-1), "ce-specversion", "1.0", "ce-type", "t", "ce-source", "/s")
	f.Add(uint8(kindMessage), "", int64(-1), "Content-Type", "text/plain", "Sb-Caller", "c", "ce-type", "t")
	f.Fuzz(func(t *testing.T, k uint8, id string, budget int64, n1, v1, n2, v2, n3, v3 string) {
		kd := kind(k % 4)
		h := map[string]string{}
		for _, kv := range [][2]string{{n1, v1}, {n2, v2}, {n3, v3}} {
			if kv[0] != "" {
				h[kv[0]] = kv[1]
			}
		}
		if budget < 1 {
			budget = noBudget
		}
		m := &driver.Message{Subject: "s", Header: h, ID: id}
		p, err := toPublishing(m, kd, budget)
		if err != nil {
			return // a header or ID AMQP cannot carry: refused, as tested elsewhere
		}
		if kd == kindRequest {
			p.ReplyTo = directReplyTo
		}
		got := headersOf(kd, delivered(p))
		if !maps.Equal(got, h) {
			t.Fatalf("kind %d id %q budget %d: headers %v came back as %v (table %v, properties %+v)", kd, id, budget, h, got, p.Headers, p)
		}
		for name := range h {
			if _, inTable := p.Headers[name]; !inTable && !carry(&amqp.Publishing{}, kd, kd == kindEvent && isCloudEvent(m), name, h[name], id, budget) {
				t.Fatalf("header %q left the table without a property", name)
			}
		}
		if kd == kindRequest && budget != noBudget {
			if n, ok := wholeMillis(p.Expiration); !ok || n > budget {
				t.Fatalf("budget %d: expiration %q", budget, p.Expiration)
			}
		}
	})
}

func TestIsReservedIgnoresASCIICase(t *testing.T) {
	for name, want := range map[string]bool{
		"Sb-Amqp-Attempt": true, "SB-AMQP-X": true, "sb-amqp-": true, "x-death": true, "X-Death": true,
		"x-delivery-count": true, "X-First-Death-Reason": true, "x-last-death-queue": true,
		"x-deaths": false, "x-delivery-count2": false, "Sb-Amqp": false, "x-first-death": false, "": false,
		"Sb-Ämqp-x": false, "x-Death-Star": false, "xx-death": false,
	} {
		if got := isReserved(name); got != want {
			t.Errorf("isReserved(%q) = %v, want %v", name, got, want)
		}
	}
}
