package amqpbus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
)

// deadLetters dead-letters n messages poison-0 … of group on topic (one
// attempt each) and returns once they are stored.
func (e *env) deadLetters(c *bus.Conn, topic, group string, n int) {
	e.t.Helper()
	var mu sync.Mutex
	failed := 0
	all := make(chan struct{})
	sub, err := c.Subscribe(ctxWait(e.t), topic, group, func(_ context.Context, d *bus.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		if failed++; failed == n {
			close(all)
		}
		return errors.New("rejected " + string(d.Body))
	}, bus.SubscribeOptions{MaxAttempts: 1})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range n {
		if err := c.Publish(ctxWait(e.t), &bus.Message{Subject: topic, Header: bus.Header{"Kind": "poison"}, Body: []byte(fmt.Sprintf("poison-%d", i))}); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-ctxWait(e.t).Done():
		e.t.Fatal("the poison messages did not all fail")
	}
	// Stop waits for the handlers' dead-letter publishes.
	if err := sub.Stop(ctxWait(e.t)); err != nil {
		e.t.Fatal(err)
	}
}

// TestBrowsingCountsNoDeliveryAndKeepsTheOrder browses a dead-letter queue
// many times, then reads it with a plain client: the messages are in their
// order, never redelivered, with no delivery count, so browsing can never
// push them over a quorum queue's delivery limit.
func TestBrowsingCountsNoDeliveryAndKeepsTheOrder(t *testing.T) {
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt, func(t *testing.T) {
			e := newEnv(t, "queue_type", qt)
			c := e.open()
			const topic, group = "orders", "billing"
			e.deadLetters(c, topic, group, 3)
			var first []string
			for i := range 25 { // more than RabbitMQ 4's default delivery-limit of 20
				ds, err := c.DeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{})
				if err != nil || len(ds) != 3 {
					t.Fatalf("browse %d: %d dead letters, %v; want 3", i, len(ds), err)
				}
				var ids []string
				for _, d := range ds {
					ids = append(ids, d.ID)
				}
				if first == nil {
					first = ids
				} else if !slices.Equal(ids, first) {
					t.Fatalf("browse %d found IDs %v, want %v as the first time", i, ids, first)
				}
			}
			ch := e.plain()
			queue := e.prefix + ".group." + group + "." + bus.DeadLetterTopic(group, topic)
			var bodies []string
			for range 3 {
				d, ok, err := ch.Get(queue, false)
				if err != nil || !ok {
					t.Fatalf("plain get from %s: %v, %v", queue, ok, err)
				}
				if n, ok := d.Headers["x-delivery-count"]; ok && fmt.Sprint(n) != "0" || d.Redelivered {
					t.Errorf("%s after 25 browses: x-delivery-count %v, redelivered %v; want neither", d.Body, n, d.Redelivered)
				}
				if d.Headers["Kind"] != "poison" || !strings.HasPrefix(fmt.Sprint(d.Headers[bus.HeaderDeadReason]), "rejected poison-") {
					t.Errorf("%s lost headers: %v", d.Body, d.Headers)
				}
				bodies = append(bodies, string(d.Body))
			}
			if want := []string{"poison-0", "poison-1", "poison-2"}; !slices.Equal(bodies, want) {
				t.Errorf("queue order after browsing %v, want %v", bodies, want)
			}
		})
	}
}

// TestReplayToAGroupWhoseQueueIsGoneKeepsTheDeadLetters deletes the group
// queue: the replay fails with NotFound instead of publishing into nowhere,
// and every dead letter stays.
func TestReplayToAGroupWhoseQueueIsGoneKeepsTheDeadLetters(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	const topic, group = "orders", "billing"
	e.deadLetters(c, topic, group, 2)
	if _, err := e.plain().QueueDelete(e.prefix+".group."+group+"."+topic, false, false, false); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReplayDeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{})
	if bus.ErrorCode(err) != bus.NotFound || !strings.Contains(err.Error(), "does not consume topic orders") {
		t.Errorf("ReplayDeadLetters to a deleted group queue: %v, want NotFound saying the group does not consume the topic", err)
	}
	if left, err := c.DeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{}); err != nil || len(left) != 2 {
		t.Errorf("after the refused replay %d dead letters are left (%v), want 2", len(left), err)
	}
}

// TestCopiesOfADeadLetterAreOneDeadLetter replaces a dead letter with two
// copies of it, as an interrupted rotation can leave: it is listed once,
// under its ID, and purging that ID removes both copies.
func TestCopiesOfADeadLetterAreOneDeadLetter(t *testing.T) {
	e := newEnv(t)
	c := e.open()
	const topic, group = "orders", "billing"
	e.deadLetters(c, topic, group, 1)
	before, err := c.DeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{})
	if err != nil || len(before) != 1 {
		t.Fatalf("DeadLetters: %d, %v", len(before), err)
	}
	queue := e.prefix + ".group." + group + "." + bus.DeadLetterTopic(group, topic)
	ch := e.plain()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	d, ok, err := ch.Get(queue, false)
	if err != nil || !ok {
		t.Fatalf("plain get: %v, %v", ok, err)
	}
	for range 2 {
		if err := ch.Publish("", queue, false, false, amqp.Publishing{Headers: d.Headers, MessageId: d.MessageId,
			ContentType: d.ContentType, DeliveryMode: amqp.Persistent, Body: d.Body}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		select {
		case conf := <-confirms:
			if !conf.Ack {
				t.Fatal("the broker refused a copy")
			}
		case <-ctxWait(t).Done():
			t.Fatal("no confirmation of the copies")
		}
	}
	if err := ch.Ack(d.DeliveryTag, false); err != nil {
		t.Fatal(err)
	}
	ds, err := c.DeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{})
	if err != nil || len(ds) != 1 || ds[0].ID != before[0].ID {
		t.Fatalf("DeadLetters with two copies: %d, %v; want the one dead letter %s", len(ds), err, before[0].ID)
	}
	gone, err := c.PurgeDeadLetters(ctxWait(t), group, topic, bus.DeadLetterFilter{IDs: []string{ds[0].ID}})
	if err != nil || len(gone) != 1 {
		t.Fatalf("PurgeDeadLetters: %d, %v", len(gone), err)
	}
	if _, ok, err := ch.Get(queue, false); err != nil || ok {
		t.Errorf("after purging the ID a copy is left in %s (%v)", queue, err)
	}
}
