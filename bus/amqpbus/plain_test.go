package amqpbus_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
)

// TestPlainAMQPClientsInteroperate speaks the mapping of the package doc
// (docs/protocol.md) with nothing but amqp091-go on one side.
func TestPlainAMQPClientsInteroperate(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	msgX, evtX := e.prefix+".msg", e.prefix+".evt"

	t.Run("a plain server in a queue group answers a bus request", func(t *testing.T) {
		ch := e.plain()
		queue := e.prefix + ".serve.plain.svc.hello"
		args := amqp.Table{"x-queue-type": "classic", "x-expires": int32(300000)}
		if _, err := ch.QueueDeclare(queue, true, true, false, false, args); err != nil {
			t.Fatalf("declare the documented shared queue: %v", err)
		}
		if err := ch.QueueBind(queue, "svc.hello", msgX, false, nil); err != nil {
			t.Fatal(err)
		}
		reqs, err := ch.Consume(queue, "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A bus server joins the same queue group: same queue, same arguments.
		sub, err := c.Serve(ctxWait(t), "svc.hello", "plain", func(_ context.Context, req *bus.Message) *bus.Message { return req })
		if err != nil {
			t.Fatalf("bus Serve on the queue a plain client declared: %v", err)
		}
		if err := sub.Stop(ctxWait(t)); err != nil {
			t.Fatal(err)
		}
		go func() {
			for d := range reqs {
				ms, err := strconv.Atoi(d.Expiration)
				ok := err == nil && ms > 0 && ms <= 10000 && d.CorrelationId != "" && strings.HasPrefix(d.ReplyTo, "amq.rabbitmq.reply-to")
				body := "hello " + string(d.Body)
				if !ok {
					body = "bad request properties: expiration " + d.Expiration + " reply_to " + d.ReplyTo
				}
				// What the bus request carried: the caller as app_id,
				// Sb-Timeout as the expiration, the rest in the table.
				echo := fmt.Sprintf("app_id=%s expiration=%s table=%v", d.AppId, d.Expiration, d.Headers)
				_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{
					CorrelationId: d.CorrelationId, Body: []byte(body), AppId: "plain-1", ContentType: "text/plain",
					Headers: amqp.Table{"echo": d.Headers["X-Req"], "seen": echo},
				})
			}
		}()
		call := func(h bus.Header) *bus.Message {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rep, err := c.Request(ctx, &bus.Message{Subject: "svc.hello", Header: h, Body: []byte("world")})
			if err != nil {
				t.Fatal(err)
			}
			if string(rep.Body) != "hello world" || rep.Header.Get("Sb-Instance") != "plain-1" ||
				rep.Header.Get("Content-Type") != "text/plain" || rep.Header.Get("echo") != "r1" || len(rep.Header) != 4 {
				t.Errorf("reply %q headers %v, want Sb-Instance and Content-Type from app_id and content_type", rep.Body, rep.Header)
			}
			return rep
		}
		// An SDK request: its envelope travels in properties.
		rep := call(bus.Header{"X-Req": "r1", "Sb-Caller": "checkout", "Sb-Timeout": "5000"})
		if want := "app_id=checkout expiration=5000 table=map[X-Req:r1]"; rep.Header.Get("seen") != want {
			t.Errorf("the plain server saw %q, want %q", rep.Header.Get("seen"), want)
		}
		// A deadline without Sb-Timeout: the expiration says so.
		rep = call(bus.Header{"X-Req": "r1"})
		if !strings.HasPrefix(rep.Header.Get("seen"), "app_id= expiration=") || !strings.HasSuffix(rep.Header.Get("seen"), "table=map[Sb-Amqp-No-Timeout:1 X-Req:r1]") {
			t.Errorf("the plain server saw %q, want no app_id and Sb-Amqp-No-Timeout in the table", rep.Header.Get("seen"))
		}
	})

	t.Run("a plain client calls a bus server with direct reply-to", func(t *testing.T) {
		seen := make(chan bus.Header, 2)
		if _, err := c.Serve(ctxWait(t), "svc.upper", "upper", func(_ context.Context, req *bus.Message) *bus.Message {
			seen <- req.Header
			return &bus.Message{Header: bus.Header{"Content-Type": "text/plain", "Sb-Instance": "upper-1"}, Body: []byte(strings.ToUpper(string(req.Body)))}
		}); err != nil {
			t.Fatal(err)
		}
		ch := e.plain()
		replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		returns := ch.NotifyReturn(make(chan amqp.Return, 1))
		call := func(subject string) (amqp.Delivery, *amqp.Return) {
			t.Helper()
			if err := ch.Publish(msgX, subject, true, false, amqp.Publishing{
				ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "call-" + subject, Expiration: "5000", AppId: "plain-caller",
				Headers: amqp.Table{"X-Req": "r2"}, Body: []byte("shout"),
			}); err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-replies:
				return d, nil
			case r := <-returns:
				return amqp.Delivery{}, &r
			case <-time.After(wait):
				t.Fatal("no reply and no return")
			}
			panic("unreachable")
		}
		d, ret := call("svc.upper")
		if ret != nil || d.CorrelationId != "call-svc.upper" || string(d.Body) != "SHOUT" || len(d.Headers) != 0 || d.ContentType != "text/plain" || d.AppId != "upper-1" {
			t.Errorf("reply %q correlation %q headers %v content_type %q app_id %q (return %v), want an empty table, content_type and app_id",
				d.Body, d.CorrelationId, d.Headers, d.ContentType, d.AppId, ret)
		}
		select {
		case h := <-seen:
			// The expiration is the plain caller's budget, its app_id the caller.
			want := bus.Header{"X-Req": "r2", "Sb-Timeout": "5000", "Sb-Caller": "plain-caller"}
			if !maps.Equal(h, want) {
				t.Errorf("the bus server saw headers %v, want %v", h, want)
			}
		default:
			t.Error("the bus server saw no request")
		}
		if _, ret := call("svc.nobody"); ret == nil || ret.ReplyCode != amqp.NoRoute {
			t.Errorf("a call nobody serves: return %v, want 312 NO_ROUTE", ret)
		}
	})

	t.Run("a plain publisher reaches a bus group", func(t *testing.T) {
		got := make(chan *bus.Delivery, 2)
		if _, err := c.Subscribe(ctxWait(t), "trip.requested", "dispatch", func(_ context.Context, d *bus.Delivery) error {
			got <- d
			return nil
		}, bus.SubscribeOptions{}); err != nil {
			t.Fatal(err)
		}
		ch := e.plain()
		if err := ch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 12, 1, 21, 41, 7, 0, time.UTC)
		for _, tc := range []struct {
			name string
			pub  amqp.Publishing
			want bus.Header
		}{
			{"attributes in the table", amqp.Publishing{
				MessageId: "ev-1", ContentType: "application/json",
				Headers: amqp.Table{"ce-id": "ev-1", "ce-type": "trip.requested", "count": int32(3)}},
				bus.Header{"ce-id": "ev-1", "ce-type": "trip.requested", "count": "3", "Content-Type": "application/json"}},
			{"attributes in properties", amqp.Publishing{
				MessageId: "ev-2", ContentType: "application/json", Type: "trip.requested", AppId: "/plain", Timestamp: at,
				Headers: amqp.Table{"ce-subject": "trip-9"}},
				bus.Header{"ce-specversion": "1.0", "ce-id": "ev-2", "ce-type": "trip.requested", "ce-source": "/plain",
					"ce-time": "2026-12-01T21:41:07Z", "ce-subject": "trip-9", "Content-Type": "application/json"}},
		} {
			tc.pub.DeliveryMode, tc.pub.Body = amqp.Persistent, []byte(`{}`)
			dc, err := ch.PublishWithDeferredConfirm(evtX, "trip.requested", true, false, tc.pub)
			if err != nil || !dc.Wait() {
				t.Fatalf("plain publish: %v", err)
			}
			select {
			case d := <-got:
				if d.ID != tc.pub.MessageId || d.Subject != "trip.requested" || d.Attempt != 1 || !maps.Equal(d.Header, tc.want) {
					t.Errorf("%s: delivery %s id %q attempt %d headers %v, want id %q headers %v", tc.name, d.Subject, d.ID, d.Attempt, d.Header, tc.pub.MessageId, tc.want)
				}
			case <-time.After(wait):
				t.Fatalf("%s: the group got nothing", tc.name)
			}
		}
	})

	t.Run("a plain consumer reads a bus group's queue", func(t *testing.T) {
		sub, err := c.Subscribe(ctxWait(t), "invoice.sent", "archive", func(context.Context, *bus.Delivery) error { return nil }, bus.SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.Stop(ctxWait(t)); err != nil {
			t.Fatal(err)
		}
		// An SDK event: its CloudEvents attributes travel in properties,
		// but a time with a fraction of a second.
		h := bus.Header{"Content-Type": "application/json", "ce-specversion": "1.0", "ce-id": "inv-7", "ce-type": "invoice.sent",
			"ce-source": "/switchboard/billing", "ce-time": "2026-12-01T21:41:07.123456789Z"}
		if err := c.Publish(ctxWait(t), &bus.Message{Subject: "invoice.sent", ID: "inv-7", Header: h, Body: []byte(`{"n":7}`)}); err != nil {
			t.Fatal(err)
		}
		ch := e.plain()
		queue := e.prefix + ".group.archive.invoice.sent"
		q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		if err != nil {
			t.Fatalf("the documented group queue %s: %v", queue, err)
		}
		if q.Messages != 1 {
			t.Errorf("%s holds %d messages, want 1", queue, q.Messages)
		}
		d, ok, err := ch.Get(queue, true)
		if err != nil || !ok {
			t.Fatalf("get from %s: %v %v", queue, ok, err)
		}
		delete(d.Headers, "x-delivery-count") // a quorum queue's
		if d.MessageId != "inv-7" || d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" || d.Type != "invoice.sent" ||
			d.AppId != "/switchboard/billing" || !d.Timestamp.IsZero() || len(d.Headers) != 1 || d.Headers["ce-time"] != h["ce-time"] ||
			d.RoutingKey != "invoice.sent" || string(d.Body) != `{"n":7}` {
			t.Errorf("message %q id %q mode %d content_type %q type %q app_id %q timestamp %v headers %v key %q",
				d.Body, d.MessageId, d.DeliveryMode, d.ContentType, d.Type, d.AppId, d.Timestamp, d.Headers, d.RoutingKey)
		}
		if _, err := ch.QueueDeclarePassive(e.prefix+".group.archive._dlq.archive.invoice.sent", true, false, false, false, nil); err != nil {
			t.Errorf("the group's dead-letter queue: %v", err)
		}
	})
}
