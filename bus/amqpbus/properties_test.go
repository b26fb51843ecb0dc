package amqpbus_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/amqpbus"
	"github.com/switchboard-dev/switchboard/wire"
)

// TestPropertyHeadersAreTheEnvelopesNames: the driver cannot import wire
// (it is above package bus), so it spells the names it carries in
// properties itself; they must be the envelope's.
func TestPropertyHeadersAreTheEnvelopesNames(t *testing.T) {
	for driverName, wireName := range map[string]string{
		amqpbus.HeaderContentType:   wire.HeaderContentType,
		amqpbus.HeaderTimeout:       wire.HeaderTimeout,
		amqpbus.HeaderCaller:        wire.HeaderCaller,
		amqpbus.HeaderInstance:      wire.HeaderInstance,
		amqpbus.HeaderCESpecVersion: wire.HeaderCESpecVersion,
		amqpbus.HeaderCEID:          wire.HeaderCEID,
		amqpbus.HeaderCEType:        wire.HeaderCEType,
		amqpbus.HeaderCESource:      wire.HeaderCESource,
		amqpbus.HeaderCETime:        wire.HeaderCETime,
	} {
		if driverName != wireName {
			t.Errorf("amqpbus carries %q in a property, but the envelope's header is %q", driverName, wireName)
		}
	}
}

// tap binds a private queue of a plain channel to exchange with key, to see
// each message as the broker has it.
func tap(t *testing.T, ch *amqp.Channel, exchange, key string) <-chan amqp.Delivery {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, key, exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func next[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s", what)
	}
	panic("unreachable")
}

// tableNames lists the names in a headers table, sorted, for messages.
func tableNames(t amqp.Table) string {
	var names []string
	for k := range t {
		names = append(names, k)
	}
	if len(names) == 0 {
		return "(empty)"
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// TestEnvelopeHeadersRoundTripThroughProperties checks, for requests and
// replies, that every header comes back exactly whether or not a property
// can carry it, and that the typical envelope leaves the table empty.
func TestEnvelopeHeadersRoundTripThroughProperties(t *testing.T) {
	e := newEnv(t)
	server, client := e.open(), e.open()
	ctx := ctxWait(t)
	// Replies echo the headers the request asked for in its body.
	replies := map[string]bus.Header{}
	seen := make(chan *bus.Message, 1)
	if _, err := server.Serve(ctx, "props.echo", "props", func(_ context.Context, req *bus.Message) *bus.Message {
		seen <- req
		return &bus.Message{Header: replies[string(req.Body)].Clone(), Body: req.Body}
	}); err != nil {
		t.Fatal(err)
	}
	listened := make(chan *bus.Message, 1)
	if _, err := server.Listen(ctx, "props.echo", func(m *bus.Message) { listened <- m }); err != nil {
		t.Fatal(err)
	}
	onWire := tap(t, e.plain(), e.prefix+".msg", "props.echo")

	long := strings.Repeat("l", 256)
	for i, tc := range []struct {
		name         string
		req, rep     bus.Header
		table        string // the request's table as the broker has it
		appID, expir string // its app_id and expiration ("budget": from the deadline)
	}{
		{"the SDK's envelope travels in properties alone",
			bus.Header{"Sb-Caller": "checkout", "Sb-Timeout": "4000"}, bus.Header{"Sb-Instance": "trips-1"},
			"(empty)", "checkout", "4000"},
		{"Content-Type is content_type",
			bus.Header{"Content-Type": "application/protobuf", "Sb-Timeout": "4000"}, bus.Header{"Content-Type": "application/protobuf", "Sb-Instance": "i"},
			"(empty)", "", "4000"},
		{"a budget beyond the deadline stays in the table",
			bus.Header{"Sb-Timeout": "60000"}, nil, "Sb-Timeout", "", "budget"},
		{"a zero budget stays in the table",
			bus.Header{"Sb-Timeout": "0"}, nil, "Sb-Timeout", "", "budget"},
		{"a budget the expiration would not give back stays in the table",
			bus.Header{"Sb-Timeout": "0400"}, nil, "Sb-Timeout", "", "budget"},
		{"a malformed budget stays in the table",
			bus.Header{"Sb-Timeout": "4s"}, nil, "Sb-Timeout", "", "budget"},
		{"a deadline without a budget says so",
			bus.Header{"X-Other": "1"}, nil, "Sb-Amqp-No-Timeout,X-Other", "", "budget"},
		{"another spelling is another header",
			bus.Header{"sb-timeout": "4000", "sb-caller": "x"}, nil, "Sb-Amqp-No-Timeout,sb-caller,sb-timeout", "", "budget"},
		{"empty values stay in the table",
			bus.Header{"Sb-Caller": "", "Content-Type": "", "Sb-Timeout": "4000"}, bus.Header{"Sb-Instance": "", "Content-Type": ""},
			"Content-Type,Sb-Caller", "", "4000"},
		{"values over 255 bytes stay in the table",
			bus.Header{"Sb-Caller": long, "Content-Type": long, "Sb-Timeout": "4000"}, bus.Header{"Sb-Instance": long, "Content-Type": long},
			"Content-Type,Sb-Caller", "", "4000"},
		{"a reply's name on a request is just a header",
			bus.Header{"Sb-Instance": "i", "Sb-Timeout": "4000"}, bus.Header{"Sb-Caller": "c", "Sb-Timeout": "1"},
			"Sb-Instance", "", "4000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strconv.Itoa(i)
			replies[body] = tc.rep
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			rep, err := client.Request(rctx, &bus.Message{Subject: "props.echo", Header: tc.req.Clone(), Body: []byte(body)})
			if err != nil {
				t.Fatal(err)
			}
			if req := next(t, "request", seen); !maps.Equal(req.Header, tc.req) {
				t.Errorf("the server saw headers %v, want %v", req.Header, tc.req)
			}
			if m := next(t, "request for the listener", listened); !maps.Equal(m.Header, tc.req) {
				t.Errorf("a listener saw headers %v, want %v", m.Header, tc.req)
			}
			want := tc.rep
			if want == nil {
				want = bus.Header{}
			}
			if !maps.Equal(rep.Header, want) {
				t.Errorf("the reply has headers %v, want %v", rep.Header, want)
			}
			d := next(t, "copy of the request", onWire)
			expir := tc.expir
			if expir == "budget" {
				if ms, err := strconv.Atoi(d.Expiration); err == nil && ms > 4000 && ms <= 5000 {
					expir = d.Expiration
				}
			}
			if got := tableNames(d.Headers); got != tc.table || d.AppId != tc.appID || d.Expiration != expir {
				t.Errorf("the request went as table %s app_id %q expiration %q, want table %s app_id %q expiration %s",
					got, d.AppId, d.Expiration, tc.table, tc.appID, tc.expir)
			}
		})
	}
}

// TestCloudEventsRoundTripThroughProperties does the same for events.
func TestCloudEventsRoundTripThroughProperties(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	ctx := ctxWait(t)
	got := make(chan *bus.Delivery, 1)
	if _, err := c.Subscribe(ctx, "props.event", "props", func(_ context.Context, d *bus.Delivery) error {
		got <- d
		return nil
	}, bus.SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	tailed := make(chan *bus.Message, 1)
	if _, err := c.Tail(ctx, "props.event", func(m *bus.Message) { tailed <- m }); err != nil {
		t.Fatal(err)
	}
	onWire := tap(t, e.plain(), e.prefix+".evt", "props.event")

	ce := func(id, time string, more ...string) bus.Header {
		h := bus.Header{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/switchboard/trips", "ce-type": "props.event",
			"Content-Type": "application/json"}
		if time != "" {
			h["ce-time"] = time
		}
		for i := 0; i+1 < len(more); i += 2 {
			if more[i+1] == "-" {
				delete(h, more[i])
			} else {
				h[more[i]] = more[i+1]
			}
		}
		return h
	}
	for _, tc := range []struct {
		name, id string
		h        bus.Header
		table    string
	}{
		{"the SDK's event keeps only a sub-second time in the table", "ev-1", ce("ev-1", "2026-12-01T21:41:07.123456789Z"), "ce-time"},
		{"a whole second is the timestamp", "ev-2", ce("ev-2", "2026-12-01T21:41:07Z"), "(empty)"},
		{"a time with an offset stays in the table", "ev-3", ce("ev-3", "2026-12-01T22:41:07+01:00"), "ce-time"},
		{"a time before 1970 stays in the table", "ev-4", ce("ev-4", "1969-12-31T23:59:59Z"), "ce-time"},
		{"a half second stays in the table", "ev-5", ce("ev-5", "2026-12-01T21:41:07.5Z"), "ce-time"},
		{"another specversion is all table", "ev-6", ce("ev-6", "", "ce-specversion", "0.3"), "ce-id,ce-source,ce-specversion,ce-type"},
		{"without ce-id, an ID keeps the attributes in the table", "ev-7", ce("ev-7", "", "ce-id", "-"), "ce-source,ce-specversion,ce-type"},
		{"a ce-id that is not the ID stays in the table", "ev-8", ce("other", ""), "ce-id"},
		{"without an ID, ce-id stays in the table", "", ce("ev-9", ""), "ce-id"},
		{"without an ID or ce-id, no ce-id appears", "", ce("", "", "ce-id", "-"), "(empty)"},
		{"an empty source stays in the table", "ev-11", ce("ev-11", "", "ce-source", ""), "ce-source"},
		{"a type over 255 bytes is all table", "ev-12", ce("ev-12", "", "ce-type", strings.Repeat("t", 256)), "ce-id,ce-source,ce-specversion,ce-type"},
		{"a plain message has only content_type", "ev-13", bus.Header{"Content-Type": "text/plain", "ce-id": "ev-13", "k": "v"}, "ce-id,k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Publish(ctx, &bus.Message{Subject: "props.event", ID: tc.id, Header: tc.h.Clone(), Body: []byte(tc.name)}); err != nil {
				t.Fatal(err)
			}
			d := next(t, "delivery", got)
			if d.ID != tc.id || !maps.Equal(d.Header, tc.h) {
				t.Errorf("the group got id %q headers %v, want id %q headers %v", d.ID, d.Header, tc.id, tc.h)
			}
			if m := next(t, "tailed event", tailed); !maps.Equal(m.Header, tc.h) {
				t.Errorf("a tail saw headers %v, want %v", m.Header, tc.h)
			}
			if raw := next(t, "copy of the event", onWire); tableNames(raw.Headers) != tc.table {
				t.Errorf("the event went with table %s (type %q app_id %q timestamp %v), want %s",
					tableNames(raw.Headers), raw.Type, raw.AppId, raw.Timestamp, tc.table)
			}
		})
	}
}
