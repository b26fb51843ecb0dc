package amqpbus_test

import (
	"context"
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
				_ = ch.Publish("", d.ReplyTo, false, false, amqp.Publishing{
					CorrelationId: d.CorrelationId, Body: []byte(body),
					Headers: amqp.Table{"Sb-Instance": "plain-1", "echo": d.Headers["X-Req"]},
				})
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rep, err := c.Request(ctx, &bus.Message{Subject: "svc.hello", Header: bus.Header{"X-Req": "r1"}, Body: []byte("world")})
		if err != nil {
			t.Fatal(err)
		}
		if string(rep.Body) != "hello world" || rep.Header.Get("Sb-Instance") != "plain-1" || rep.Header.Get("echo") != "r1" {
			t.Errorf("reply %q headers %v", rep.Body, rep.Header)
		}
	})

	t.Run("a plain client calls a bus server with direct reply-to", func(t *testing.T) {
		if _, err := c.Serve(ctxWait(t), "svc.upper", "upper", func(_ context.Context, req *bus.Message) *bus.Message {
			return &bus.Message{Header: bus.Header{"Content-Type": "text/plain"}, Body: []byte(strings.ToUpper(string(req.Body)))}
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
				ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "call-" + subject, Expiration: "5000", Body: []byte("shout"),
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
		if ret != nil || d.CorrelationId != "call-svc.upper" || string(d.Body) != "SHOUT" || d.Headers["Content-Type"] != "text/plain" || d.ContentType != "text/plain" {
			t.Errorf("reply %q correlation %q headers %v content_type %q (return %v)", d.Body, d.CorrelationId, d.Headers, d.ContentType, ret)
		}
		if _, ret := call("svc.nobody"); ret == nil || ret.ReplyCode != amqp.NoRoute {
			t.Errorf("a call nobody serves: return %v, want 312 NO_ROUTE", ret)
		}
	})

	t.Run("a plain publisher reaches a bus group", func(t *testing.T) {
		got := make(chan *bus.Delivery, 1)
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
		dc, err := ch.PublishWithDeferredConfirm(evtX, "trip.requested", true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: "ev-1", ContentType: "application/json",
			Headers: amqp.Table{"ce-id": "ev-1", "ce-type": "trip.requested", "count": int32(3)}, Body: []byte(`{}`),
		})
		if err != nil || !dc.Wait() {
			t.Fatalf("plain publish: %v", err)
		}
		select {
		case d := <-got:
			want := bus.Header{"ce-id": "ev-1", "ce-type": "trip.requested", "count": "3", "Content-Type": "application/json"}
			if d.ID != "ev-1" || d.Subject != "trip.requested" || d.Attempt != 1 || len(d.Header) != len(want) ||
				d.Header.Get("ce-id") != "ev-1" || d.Header.Get("count") != "3" || d.Header.Get("Content-Type") != "application/json" {
				t.Errorf("delivery %s id %q attempt %d headers %v, want headers %v", d.Subject, d.ID, d.Attempt, d.Header, want)
			}
		case <-time.After(wait):
			t.Fatal("the group got nothing")
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
		if err := c.Publish(ctxWait(t), &bus.Message{Subject: "invoice.sent", ID: "inv-7", Header: bus.Header{"Content-Type": "application/json", "ce-id": "inv-7"}, Body: []byte(`{"n":7}`)}); err != nil {
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
		if d.MessageId != "inv-7" || d.DeliveryMode != amqp.Persistent || d.ContentType != "application/json" ||
			d.Headers["ce-id"] != "inv-7" || d.RoutingKey != "invoice.sent" || string(d.Body) != `{"n":7}` {
			t.Errorf("message %q id %q mode %d content_type %q headers %v key %q", d.Body, d.MessageId, d.DeliveryMode, d.ContentType, d.Headers, d.RoutingKey)
		}
		if _, err := ch.QueueDeclarePassive(e.prefix+".group.archive._dlq.archive.invoice.sent", true, false, false, false, nil); err != nil {
			t.Errorf("the group's dead-letter queue: %v", err)
		}
	})
}
