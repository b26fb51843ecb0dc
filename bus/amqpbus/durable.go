package amqpbus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/bus/driver"
)

// confirmChan is a channel in confirm mode, of one of two kinds.
//
// A checked channel (retries and replays: a publish that must reach a
// queue, marked by its correlation id) has publishers register for their
// delivery tag before publishing; one goroutine reads the broker's
// confirmations and returns in the order the broker sent them (a
// basic.return always precedes the basic.ack of the same message), so a
// publish learns both whether the broker took it and whether it reached a
// queue.
//
// A lean channel (Publish, where a return is not an error: no group is
// owed the message) has each publish wait for amqp091-go's deferred
// confirmation of its own delivery tag, which the connection's reader
// resolves directly, with no goroutine in between; its goroutine only logs
// returns and notes the channel's close.
type confirmChan struct {
	c       *conn
	ch      *amqp.Channel
	checked bool
	pubMu   sync.Mutex // holds the delivery tag and the publish together (checked)

	mu       sync.Mutex
	waiting  map[uint64]*confirmWaiter
	returned map[string]struct{} // correlation ids returned, not yet confirmed
	dead     chan struct{}
	reason   error
}

type confirmWaiter struct {
	corr   string // set when a return must fail the publish
	result chan error
}

func (c *conn) openConfirm(ac *amqp.Connection) (*confirmChan, error) {
	return c.openConfirmKind(ac, false)
}

func (c *conn) openChecked(ac *amqp.Connection) (*confirmChan, error) {
	return c.openConfirmKind(ac, true)
}

func (c *conn) openConfirmKind(ac *amqp.Connection, checked bool) (*confirmChan, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, err
	}
	p := &confirmChan{c: c, ch: ch, checked: checked, waiting: map[uint64]*confirmWaiter{}, returned: map[string]struct{}{}, dead: make(chan struct{})}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	// Unbuffered: the connection's reader hands each over in turn, so a
	// return is seen before the confirmation that follows it.
	var confirms <-chan amqp.Confirmation
	if checked {
		confirms = ch.NotifyPublish(make(chan amqp.Confirmation))
	}
	returns := ch.NotifyReturn(make(chan amqp.Return))
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, err
	}
	if !c.spawn(func() { p.loop(closed, confirms, returns) }, nil) {
		_ = ch.Close()
		return nil, driver.ErrClosed
	}
	return p, nil
}

func (p *confirmChan) loop(closed <-chan *amqp.Error, confirms <-chan amqp.Confirmation, returns <-chan amqp.Return) {
	for closed != nil || returns != nil || confirms != nil { // confirms is nil on a lean channel
		select {
		case err, ok := <-closed:
			if !ok {
				closed = nil
				continue
			}
			if err != nil {
				p.mu.Lock()
				p.reason = err
				p.mu.Unlock()
			}
		case ret, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			if ret.CorrelationId == "" {
				p.c.noteUnrouted(ret.RoutingKey)
				continue
			}
			p.mu.Lock()
			p.returned[ret.CorrelationId] = struct{}{}
			p.mu.Unlock()
		case conf, ok := <-confirms:
			if !ok {
				confirms = nil
				continue
			}
			p.mu.Lock()
			w := p.waiting[conf.DeliveryTag]
			delete(p.waiting, conf.DeliveryTag)
			_, returned := p.returned[w.corrOrEmpty()]
			delete(p.returned, w.corrOrEmpty())
			p.mu.Unlock()
			switch {
			case w == nil:
			case !conf.Ack:
				w.result <- fmt.Errorf("the broker refused the message (basic.nack)")
			case returned:
				w.result <- fmt.Errorf("no queue took the message (basic.return)")
			default:
				w.result <- nil
			}
		}
	}
	p.mu.Lock()
	close(p.dead)
	p.mu.Unlock()
}

func (w *confirmWaiter) corrOrEmpty() string {
	if w == nil {
		return ""
	}
	return w.corr
}

// publish publishes with mandatory set and waits for the broker's
// confirmation. On a checked channel, when pub has a correlation id, a
// return fails the publish.
func (p *confirmChan) publish(ctx context.Context, exchange, key string, pub amqp.Publishing) error {
	if !p.checked {
		return p.publishLean(ctx, exchange, key, pub)
	}
	w := &confirmWaiter{corr: pub.CorrelationId, result: make(chan error, 1)}
	p.pubMu.Lock()
	tag := p.ch.GetNextPublishSeqNo()
	p.mu.Lock()
	select {
	case <-p.dead:
		p.mu.Unlock()
		p.pubMu.Unlock()
		return p.c.lostErr("publish", key, p.reason)
	default:
	}
	p.waiting[tag] = w
	p.mu.Unlock()
	err := p.ch.PublishWithContext(ctx, exchange, key, true, false, pub)
	p.pubMu.Unlock()
	if err != nil {
		p.mu.Lock()
		delete(p.waiting, tag)
		p.mu.Unlock()
		return err
	}
	select {
	case err := <-w.result:
		return err
	case <-ctx.Done():
		p.forget(tag)
		return ctx.Err()
	case <-p.dead:
		select {
		case err := <-w.result:
			return err
		default:
		}
		return p.lost(key)
	}
}

func (p *confirmChan) publishLean(ctx context.Context, exchange, key string, pub amqp.Publishing) error {
	select {
	case <-p.dead:
		return p.lost(key)
	default:
	}
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, true, false, pub)
	if err != nil {
		return err
	}
	ack, err := dc.WaitContext(ctx)
	switch {
	case err != nil:
		return err
	case ack:
		return nil
	case p.ch.IsClosed():
		// amqp091-go nacks what is pending when the channel closes.
		return p.lost(key)
	}
	return fmt.Errorf("the broker refused the message (basic.nack)")
}

func (p *confirmChan) lost(key string) error {
	p.mu.Lock()
	reason := p.reason
	p.mu.Unlock()
	return p.c.lostErr("publish", key, reason)
}

func (p *confirmChan) forget(tag uint64) {
	p.mu.Lock()
	if w := p.waiting[tag]; w != nil && w.corr != "" {
		delete(p.returned, w.corr)
	}
	delete(p.waiting, tag)
	p.mu.Unlock()
}

func (p *confirmChan) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
		return !p.ch.IsClosed()
	}
}

func (p *confirmChan) close() { _ = p.ch.Close() }

// Publish implements driver.Conn: a persistent, mandatory publish to the
// durable-topic exchange in confirm mode. It returns nil only after the
// broker's basic.ack, which for a quorum queue means a majority of its
// replicas stored the message. A publish that reaches no queue (no group
// exists on the topic) is confirmed too and is not an error: no group is
// owed it (see the package doc).
func (c *conn) Publish(ctx context.Context, msg *driver.Message) error {
	if err := c.ready(ctx, "publish", msg.Subject); err != nil {
		return err
	}
	key, err := routingKey(msg.Subject)
	if err != nil {
		return err
	}
	pub, err := toPublishing(msg, kindEvent, noBudget)
	if err != nil {
		return err
	}
	p, err := c.confirm.get("publish", msg.Subject)
	if err != nil {
		return err
	}
	if err := p.publish(ctx, c.evtX, key, pub); err != nil {
		return wrapErr("publish", msg.Subject, err)
	}
	return nil
}

// queueArgs are the arguments of the durable queues of a group.
func (c *conn) queueArgs() amqp.Table {
	t := amqp.Table{"x-queue-type": c.cfg.queueType}
	if c.cfg.queueExpires > 0 {
		t["x-expires"] = int64(c.cfg.queueExpires / time.Millisecond)
	}
	return t
}

// retryArgs are the arguments of a group's retry queue: expired messages
// are dead-lettered through the default exchange back to the group queue,
// and for quorum queues at least once (the message leaves the retry queue
// only when the group queue confirmed it).
func (c *conn) retryArgs(groupQueue string) amqp.Table {
	t := c.queueArgs()
	t["x-dead-letter-exchange"] = ""
	t["x-dead-letter-routing-key"] = groupQueue
	if c.cfg.queueType == "quorum" {
		t["x-dead-letter-strategy"] = "at-least-once"
		t["x-overflow"] = "reject-publish"
	}
	return t
}

// GroupQueue returns the name of the durable queue of group on topic with
// the default prefix: sb.group.GROUP.TOPIC (see the package doc for long
// names).
func GroupQueue(group, topic string) string { return queueName(DefaultPrefix, "group", group, topic) }

// RetryQueue returns the name of the queue holding delayed redeliveries of
// group on topic with the default prefix: sb.retry.GROUP.TOPIC.
func RetryQueue(group, topic string) string { return queueName(DefaultPrefix, "retry", group, topic) }

// Subscribe implements driver.Conn. The group's durable queue
// PREFIX.group.GROUP.TOPIC (quorum by default) is bound to the durable-topic
// exchange with the topic as binding key; each member consumes it on a
// channel of its own with prefetch spec.Prefetch and manual acks. The
// group's dead-letter topic gets a queue too (see the package doc), so that
// dead letters are kept from the moment the group exists.
func (c *conn) Subscribe(ctx context.Context, spec driver.SubscribeSpec, fn func(driver.Delivery)) (driver.Subscription, error) {
	if _, err := routingKey(spec.Topic); err != nil {
		return nil, err
	}
	exchange := c.evtX
	group := queueName(c.cfg.prefix, "group", spec.Group, spec.Topic)
	s := &consumer{op: "subscribe", what: spec.Topic, prefetch: max(spec.Prefetch, 1)}
	m := &member{c: c, sub: s, topic: spec.Topic, group: group, retry: queueName(c.cfg.prefix, "retry", spec.Group, spec.Topic)}
	keep := []struct{ queue, key string }{{group, spec.Topic}}
	if dlq := bus.DeadLetterTopic(spec.Group, spec.Topic); !strings.HasPrefix(spec.Topic, "_dlq.") && len(dlq) <= maxShortString {
		keep = append(keep, struct{ queue, key string }{queueName(c.cfg.prefix, "group", spec.Group, dlq), dlq})
	}
	s.setup = func(ch *amqp.Channel) (string, error) {
		for _, q := range keep {
			if _, err := ch.QueueDeclare(q.queue, true, false, false, false, c.queueArgs()); err != nil {
				return "", err
			}
			c.noteDeclared(q.queue)
			if err := ch.QueueBind(q.queue, q.key, exchange, false, nil); err != nil {
				return "", err
			}
		}
		return group, nil
	}
	s.deliver = func(ch *amqp.Channel, d *amqp.Delivery) {
		s.hold()
		fn(m.newDelivery(ch, d))
	}
	return c.startConsumer(ctx, s)
}

// member is one member of a consumer group.
type member struct {
	c     *conn
	sub   *consumer
	topic string
	group string // the group's queue
	retry string // the group's retry queue

	retryMu  sync.Mutex
	hasRetry bool // the retry queue was declared (and needs no refresh)
}

// delivery is one delivery to a group member.
type delivery struct {
	m       *member
	ch      *amqp.Channel // acks go to the channel the delivery came on
	tag     uint64
	msg     *driver.Message
	attempt int
	once    sync.Once
}

var _ driver.Delivery = (*delivery)(nil)

// newDelivery works out the attempt: the Sb-Amqp-Attempt header of a
// delayed copy (1 without one) plus the times the broker redelivered this
// copy: x-delivery-count on quorum queues, the redelivered flag (at most
// 1) on classic ones.
func (m *member) newDelivery(ch *amqp.Channel, d *amqp.Delivery) *delivery {
	attempt := int64(1)
	if n, ok := headerInt(d.Headers, headerAttempt); ok && n > 1 {
		attempt = n
	}
	if n, ok := headerInt(d.Headers, "x-delivery-count"); ok && n > 0 {
		attempt += n
	} else if d.Redelivered {
		attempt++
	}
	return &delivery{m: m, ch: ch, tag: d.DeliveryTag, msg: fromDelivery(m.topic, kindEvent, d), attempt: int(attempt)}
}

func (d *delivery) Message() *driver.Message { return d.msg }
func (d *delivery) Attempt() int             { return d.attempt }

func (d *delivery) settle(f func() error) (err error) {
	done := false
	d.once.Do(func() {
		done = true
		err = f()
		d.m.sub.settled()
	})
	if !done {
		return fmt.Errorf("amqpbus: delivery of %s settled twice: %w", d.msg.Subject, driver.ErrInvalid)
	}
	return err
}

// Ack acknowledges the delivery on its channel. AMQP does not confirm
// acks: if the channel is lost before the ack reaches the broker, the
// message is redelivered.
func (d *delivery) Ack(ctx context.Context) error {
	return d.settle(func() error {
		return wrapErr("ack", d.msg.Subject, d.ch.Ack(d.tag, false))
	})
}

// Nak asks for redelivery. Without a delay the message is requeued at once
// (basic.nack with requeue). With one, a copy carrying the next attempt
// number goes to the group's retry queue with the delay as its expiration,
// confirmed by the broker, and only then is the original acknowledged; if
// the copy cannot be stored the original is requeued instead, so the
// message is never lost (at worst it is delivered early or twice).
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	return d.settle(func() error {
		requeue := func() error { return wrapErr("nak", d.msg.Subject, d.ch.Nack(d.tag, false, true)) }
		if delay <= 0 {
			return requeue()
		}
		if d.ch.IsClosed() {
			// The broker already requeued it with its channel: a delayed
			// copy now would make a second one.
			return d.m.c.lostErr("nak", d.msg.Subject, nil)
		}
		if err := d.m.delay(ctx, d, delay); err != nil {
			_ = requeue()
			return wrapErr("nak", d.msg.Subject, err)
		}
		return wrapErr("nak", d.msg.Subject, d.ch.Ack(d.tag, false))
	})
}

// delay stores a copy of d in the retry queue, to come back after delay.
func (m *member) delay(ctx context.Context, d *delivery, delay time.Duration) error {
	if err := m.declareRetry(); err != nil {
		return err
	}
	pub, err := toPublishing(d.msg, kindEvent, noBudget)
	if err != nil {
		return err
	}
	if pub.Headers == nil {
		pub.Headers = amqp.Table{}
	}
	pub.Headers[headerAttempt] = strconv.Itoa(d.attempt + 1)
	pub.Expiration = strconv.FormatInt(max(int64(delay/time.Millisecond), 1), 10)
	// A correlation id lets the publish tell its own return apart: the
	// retry queue must take the copy.
	pub.CorrelationId = "sb-retry-" + newID()
	p, err := m.c.checked.get("retry", m.retry)
	if err != nil {
		return err
	}
	if err := p.publish(ctx, "", m.retry, pub); err != nil {
		m.retryMu.Lock()
		m.hasRetry = false
		m.retryMu.Unlock()
		return fmt.Errorf("store the delayed copy in %s: %w", m.retry, err)
	}
	return nil
}

// declareRetry declares the retry queue the first time, and every time
// when queues expire (queue_expires), which renews its lease.
func (m *member) declareRetry() error {
	m.retryMu.Lock()
	defer m.retryMu.Unlock()
	if m.hasRetry {
		return nil
	}
	p, err := m.c.admin.get("declare", m.retry)
	if err != nil {
		return err
	}
	p.callMu.Lock()
	_, err = p.ch.QueueDeclare(m.retry, true, false, false, false, m.c.retryArgs(m.group))
	p.callMu.Unlock()
	if err != nil {
		return wrapErr("declare", m.retry, err)
	}
	m.c.noteDeclared(m.retry)
	m.hasRetry = m.c.cfg.queueExpires == 0
	return nil
}
