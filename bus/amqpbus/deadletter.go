package amqpbus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Dead letters on RabbitMQ are the messages of the group's dead-letter
// queue PREFIX.group.GROUP._dlq.GROUP.TOPIC (see the package doc).
//
// AMQP 0.9.1 has no way to read a queue without taking messages from it,
// and the obvious one, basic.get followed by a requeue (nack, or closing
// the channel), counts a delivery against every message each time: on
// quorum queues x-delivery-count grows and, from RabbitMQ 4.0, a message
// returned delivery-limit times (20 by default) is dropped. So the driver
// reads a dead-letter queue by rotating it once: it takes the messages that
// were ready when it started, a batch at a time, publishes an exact copy of
// each back to the same queue (default exchange, mandatory, confirmed) and
// only once every copy of the batch is confirmed acknowledges the originals.
// A copy is a new message, so nothing counts against it. Deleting is the
// same rotation with the deleted messages acknowledged and not copied. If
// anything fails part way, the unacknowledged originals go back when the
// channel closes: a message can be duplicated, never lost. The queue's
// order is kept when nothing else writes to it meanwhile.
//
// A dead letter's ID is the first 12 hex digits of a SHA-256 digest of its
// message id, headers (sorted; the broker's x-* headers left out) and body:
// it names the same message on every read, and the Sb-Dead-Time header
// (nanoseconds) keeps dead letters apart. Copies left by a failure share
// their original's ID, and deleting the ID deletes them all.

var _ driver.DeadLetters = (*conn)(nil)

// rotateBatch bounds how many dead letters a rotation holds at once.
const rotateBatch = 64

// DeadLetterFeatures implements driver.DeadLetters. Listing the places
// would need the management plugin's HTTP API.
func (c *conn) DeadLetterFeatures() driver.DeadLetterFeatures {
	return driver.DeadLetterFeatures{Browse: true, Delete: true, Replay: true,
		Why: "RabbitMQ cannot list queues over AMQP 0.9.1: name the group and topic (the dead letters of group G on topic T are in queue " +
			c.cfg.prefix + ".group.G._dlq.G.T; the management UI lists them)"}
}

// DeadLetterPlaces implements driver.DeadLetters: AMQP 0.9.1 cannot
// enumerate queues.
func (c *conn) DeadLetterPlaces(context.Context) ([]driver.DeadLetterPlace, error) {
	return nil, fmt.Errorf("amqpbus: list dead-letter places: %s: %w", c.DeadLetterFeatures().Why, driver.ErrInvalid)
}

func (c *conn) dlqQueue(group, topic string) string {
	return queueName(c.cfg.prefix, "group", group, bus.DeadLetterTopic(group, topic))
}

// channelFor opens a channel of its own for a dead-letter operation: a
// passive declare of a missing queue closes its channel.
func (c *conn) channelFor(op, queue string) (*amqp.Channel, error) {
	ac, err := c.current(op, queue)
	if err != nil {
		return nil, err
	}
	ch, err := ac.Channel()
	if err != nil {
		return nil, wrapErr(op, queue, err)
	}
	return ch, nil
}

// passive returns the ready message count of queue, or ErrNotFound.
func passive(ch *amqp.Channel, op, queue, what string) (int, error) {
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return 0, fmt.Errorf("amqpbus: %s: %s (queue %s does not exist): %w", op, what, queue, driver.ErrNotFound)
	}
	if err != nil {
		return 0, wrapErr(op, queue, err)
	}
	return q.Messages, nil
}

// BrowseDeadLetters implements driver.DeadLetters by rotating the queue.
func (c *conn) BrowseDeadLetters(ctx context.Context, group, topic string, fn func(driver.DeadLetter) bool) error {
	more := true
	return c.rotate(ctx, group, topic, func(d driver.DeadLetter) bool {
		if more {
			more = fn(d)
		}
		return false
	}, nil)
}

// DeleteDeadLetters implements driver.DeadLetters by rotating the queue
// without copying the messages with those IDs.
func (c *conn) DeleteDeadLetters(ctx context.Context, group, topic string, ids []string) ([]string, error) {
	var gone []string
	err := c.rotate(ctx, group, topic, func(d driver.DeadLetter) bool {
		return slices.Contains(ids, d.ID)
	}, func(dropped []string) {
		for _, id := range dropped {
			if !slices.Contains(gone, id) {
				gone = append(gone, id)
			}
		}
	})
	// Only batches acknowledged before an error count as removed.
	return gone, err
}

// rotate takes each message that was ready in the dead-letter queue once,
// asks drop whether to delete it, and puts back (as a confirmed copy at the
// tail) every one it keeps before acknowledging the originals, a batch at
// a time, then calls committed, if set, with the IDs of the batch it
// dropped. On error the batch in hand goes back to the queue unchanged.
func (c *conn) rotate(ctx context.Context, group, topic string, drop func(driver.DeadLetter) bool, committed func([]string)) error {
	queue := c.dlqQueue(group, topic)
	const op = "read dead letters of"
	ch, err := c.channelFor(op, queue)
	if err != nil {
		return err
	}
	// Closing the channel returns whatever is still unacknowledged.
	defer ch.Close()
	n, err := passive(ch, op, queue, "no consumer group "+group+" on topic "+topic)
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, rotateBatch))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, rotateBatch))
	if err := ch.Confirm(false); err != nil {
		return wrapErr(op, queue, err)
	}
	for done := 0; done < n; {
		var held []amqp.Delivery
		for len(held) < min(rotateBatch, n-done) {
			d, ok, err := ch.Get(queue, false)
			if err != nil {
				return wrapErr(op, queue, err)
			}
			if !ok {
				break // someone else took the rest
			}
			held = append(held, d)
		}
		if len(held) == 0 {
			return nil
		}
		copies := 0
		var dropped []string
		for i := range held {
			d := &held[i]
			id := deadLetterID(d)
			if drop(driver.DeadLetter{ID: id, Message: fromDelivery(bus.DeadLetterTopic(group, topic), kindEvent, d)}) {
				dropped = append(dropped, id)
				continue
			}
			if err := ch.PublishWithContext(ctx, "", queue, true, false, copyOf(d)); err != nil {
				return wrapErr(op, queue, err)
			}
			copies++
		}
		for range copies {
			select {
			case conf, ok := <-confirms:
				if !ok {
					return c.lostErr(op, queue, nil)
				}
				if !conf.Ack {
					return fmt.Errorf("amqpbus: %s %s: the broker refused a copy (basic.nack): %w", op, queue, driver.ErrDisconnected)
				}
			case r := <-returns:
				return fmt.Errorf("amqpbus: %s %s: the queue refused a copy (%d %s): %w", op, queue, r.ReplyCode, r.ReplyText, driver.ErrNotFound)
			case err := <-closed:
				return c.lostErr(op, queue, err)
			case <-ctx.Done():
				return wrapErr(op, queue, ctx.Err())
			}
		}
		select { // a return comes before the confirmation of its message
		case r := <-returns:
			return fmt.Errorf("amqpbus: %s %s: the queue refused a copy (%d %s): %w", op, queue, r.ReplyCode, r.ReplyText, driver.ErrNotFound)
		default:
		}
		if err := ch.Ack(held[len(held)-1].DeliveryTag, true); err != nil {
			return wrapErr(op, queue, err)
		}
		// The broker handles a channel's frames in order: a synchronous
		// call after the ack returns once the ack has been processed.
		if _, err := passive(ch, op, queue, "no consumer group "+group+" on topic "+topic); err != nil {
			return err
		}
		if committed != nil && len(dropped) > 0 {
			committed(dropped)
		}
		done += len(held)
	}
	return nil
}

// copyOf is an exact copy of d to publish: every property but the broker's
// delivery count (and user_id, which the broker checks against the
// publishing user), persistent.
func copyOf(d *amqp.Delivery) amqp.Publishing {
	h := amqp.Table{}
	for k, v := range d.Headers {
		if k != "x-delivery-count" {
			h[k] = v
		}
	}
	return amqp.Publishing{Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId, ReplyTo: d.ReplyTo,
		Expiration: d.Expiration, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId, Body: d.Body}
}

// deadLetterID digests what identifies a dead letter: its message id,
// its headers but the broker's and its body.
func deadLetterID(d *amqp.Delivery) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\n", len(d.MessageId), d.MessageId)
	hs := headersOf(kindEvent, d)
	keys := make([]string, 0, len(hs))
	for k := range hs {
		if !strings.HasPrefix(strings.ToLower(k), "x-") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(hs[k]), hs[k])
	}
	h.Write(d.Body)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// PublishToGroup implements driver.DeadLetters: the message goes to the
// group's queue alone, through the default exchange, mandatory and
// confirmed; no other group sees it.
func (c *conn) PublishToGroup(ctx context.Context, group string, msg *driver.Message) error {
	if err := c.ready(ctx, "replay", msg.Subject); err != nil {
		return err
	}
	queue := queueName(c.cfg.prefix, "group", group, msg.Subject)
	ch, err := c.channelFor("replay to", queue)
	if err != nil {
		return err
	}
	_, err = passive(ch, "replay to", queue, "consumer group "+group+" does not consume topic "+msg.Subject)
	_ = ch.Close()
	if err != nil {
		return err
	}
	pub, err := toPublishing(msg, kindEvent, noBudget)
	if err != nil {
		return err
	}
	// A correlation id makes a return fail the publish.
	pub.CorrelationId = "sb-replay-" + newID()
	p, err := c.checked.get("replay", queue)
	if err != nil {
		return err
	}
	if err := p.publish(ctx, "", queue, pub); err != nil {
		return wrapErr("replay to", queue, err)
	}
	return nil
}
