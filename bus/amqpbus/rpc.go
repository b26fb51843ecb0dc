package amqpbus

import (
	"context"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// directReplyTo is RabbitMQ's pseudo-queue for replies: consumed in no-ack
// mode on the channel that publishes the requests, no queue to declare.
const directReplyTo = "amq.rabbitmq.reply-to"

// Arguments of the queues the driver declares for Serve, Listen and Tail.
// They are always classic queues (whatever the server's default type) and
// hold only transient messages.
var (
	// exclusiveArgs: a queue private to one subscription, deleted with it.
	exclusiveArgs = amqp.Table{"x-queue-type": "classic"}
	// sharedArgs: the queue a group of servers shares. It is durable (the
	// broker deprecates transient shared queues) but deleted when its last
	// consumer leaves, and after 5 minutes if no consumer ever came.
	sharedArgs = amqp.Table{"x-queue-type": "classic", "x-expires": int32(sharedQueueExpires / time.Millisecond)}
)

const sharedQueueExpires = 5 * time.Minute

// rpcChan is a channel for requests, used by one request at a time: the
// request publishes on it and reads its reply (direct reply-to) and any
// return of it (unroutable) straight from the channel, as a caller of the
// plain client does, with no goroutine in between. What comes for an
// earlier request that gave up (a late reply or return) is told apart by
// its correlation id and dropped by the next user.
type rpcChan struct {
	ch      *amqp.Channel
	replies <-chan amqp.Delivery
	// returns holds the return of at most one request gone: amqp091-go's
	// reader blocks on it until read, so a request that gives up leaves at
	// most one behind and the next user drains it.
	returns <-chan amqp.Return
	closed  <-chan *amqp.Error
	dead    bool // closed, as seen by its user
}

// rpcIdle is how many idle request channels a connection keeps: as many
// as requests have run at once, up to this.
const rpcIdle = 64

// rpcChans hands out request channels, one per request in flight, reusing
// idle ones; each connection's channels go with it.
type rpcChans struct {
	c    *conn
	mu   sync.Mutex
	idle []*rpcChan
	ac   *amqp.Connection // the connection of the idle ones
}

func (c *conn) openRPC(ac *amqp.Connection) (*rpcChan, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, err
	}
	r := &rpcChan{ch: ch, closed: ch.NotifyClose(make(chan *amqp.Error, 1)), returns: ch.NotifyReturn(make(chan amqp.Return, 2))}
	if r.replies, err = ch.Consume(directReplyTo, "sb-replies-"+newID(), true, false, false, false, nil); err != nil {
		_ = ch.Close()
		return nil, err
	}
	return r, nil
}

// get returns a live request channel of the current connection, opening
// one when none is idle; it fails fast while disconnected.
func (p *rpcChans) get(op, subject string) (*rpcChan, error) {
	ac, err := p.c.current(op, subject)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.ac != ac {
		for _, r := range p.idle {
			r.close()
		}
		p.idle, p.ac = p.idle[:0], ac
	}
	for len(p.idle) > 0 {
		r := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if r.alive() {
			p.mu.Unlock()
			return r, nil
		}
		r.close()
	}
	p.mu.Unlock()
	r, err := p.c.openRPC(ac)
	if err != nil {
		return nil, wrapErr(op, subject, err)
	}
	return r, nil
}

// put takes back a channel whose request is over.
func (p *rpcChans) put(r *rpcChan) {
	p.mu.Lock()
	if r.alive() && len(p.idle) < rpcIdle {
		p.idle = append(p.idle, r)
		r = nil
	}
	p.mu.Unlock()
	if r != nil {
		r.close()
	}
}

func (p *rpcChans) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, r := range idle {
		r.close()
	}
}

// alive drops what an earlier request left behind and reports whether the
// channel is still open.
func (r *rpcChan) alive() bool {
	if r.dead {
		return false
	}
	for {
		select {
		case <-r.returns:
		case <-r.closed:
			r.dead = true
			return false
		default:
			r.dead = r.ch.IsClosed()
			return !r.dead
		}
	}
}

func (r *rpcChan) close() {
	r.dead = true
	_ = r.ch.Close()
}

// budget is the AMQP expiration (milliseconds, at least 1) for a message
// that is useless after the deadline of ctx, or noBudget without one.
func budget(ctx context.Context) int64 {
	dl, ok := ctx.Deadline()
	if !ok {
		return noBudget
	}
	ms := (time.Until(dl) + time.Millisecond - 1) / time.Millisecond
	return max(int64(ms), 1)
}

// Request implements driver.Conn: a mandatory publish to the message exchange
// with reply_to amq.rabbitmq.reply-to, a fresh correlation id and an
// expiration from the deadline. An unroutable request comes back
// (basic.return) and fails at once with ErrNoResponders.
func (c *conn) Request(ctx context.Context, msg *driver.Message) (*driver.Message, error) {
	if err := c.ready(ctx, "request", msg.Subject); err != nil {
		return nil, err
	}
	key, err := routingKey(msg.Subject)
	if err != nil {
		return nil, err
	}
	pub, err := toPublishing(msg, kindRequest, budget(ctx))
	if err != nil {
		return nil, err
	}
	r, err := c.rpc.get("request", msg.Subject)
	if err != nil {
		return nil, err
	}
	defer c.rpc.put(r)
	id := newID()
	pub.CorrelationId = id
	pub.ReplyTo = directReplyTo
	if err := r.ch.PublishWithContext(ctx, c.msgX, key, true, false, pub); err != nil {
		return nil, wrapErr("request", msg.Subject, err)
	}
	for {
		select {
		case d, ok := <-r.replies:
			if !ok {
				// The channel closed; its reason follows on r.closed.
				r.replies = nil
				continue
			}
			if d.CorrelationId != id {
				continue // the late reply to an earlier request
			}
			return fromDelivery(msg.Subject, kindReply, &d), nil
		case ret := <-r.returns:
			if ret.CorrelationId != id {
				continue
			}
			return nil, fmt.Errorf("amqpbus: request %s: %w (returned by the broker: %d %s)",
				ret.RoutingKey, driver.ErrNoResponders, ret.ReplyCode, ret.ReplyText)
		case err := <-r.closed:
			r.dead = true
			var reason error
			if err != nil {
				reason = err
			}
			return nil, c.lostErr("request", msg.Subject, reason)
		case <-ctx.Done():
			return nil, wrapErr("request", msg.Subject, ctx.Err())
		}
	}
}

// Serve implements driver.Conn. With a queue, the servers of (queue,
// subject) share the queue PREFIX.serve.QUEUE.SUBJECT and compete for its
// requests; without, each Serve has a private server-named queue. Either is
// bound to the message exchange with the subject as binding key (so it also
// gets what Send sends to the subject, as on NATS). A request is
// acknowledged when it is handed over: a lost reply means a timeout, as on
// any broker.
func (c *conn) Serve(ctx context.Context, subject, queue string, fn func(*driver.Message, driver.Respond)) (driver.Subscription, error) {
	key, err := bindingKey(subject)
	if err != nil {
		return nil, err
	}
	exchange := c.msgX
	s := &consumer{op: "serve", what: subject, prefetch: c.cfg.prefetch}
	s.setup = func(ch *amqp.Channel) (string, error) {
		var q amqp.Queue
		var err error
		if queue == "" {
			q, err = ch.QueueDeclare("", false, true, true, false, exclusiveArgs)
		} else {
			q, err = ch.QueueDeclare(queueName(c.cfg.prefix, "serve", queue, subject), true, true, false, false, sharedArgs)
		}
		if err != nil {
			return "", err
		}
		return q.Name, ch.QueueBind(q.Name, key, exchange, false, nil)
	}
	s.deliver = func(ch *amqp.Channel, d *amqp.Delivery) {
		s.handedOver(ch, d)
		subject, replyTo, corr := d.RoutingKey, d.ReplyTo, d.CorrelationId // d is reused: copy what the reply needs
		fn(fromDelivery(subject, requestKind(d), d), func(ctx context.Context, rep *driver.Message) error {
			return c.respond(ctx, subject, replyTo, corr, rep)
		})
	}
	return c.startConsumer(ctx, s)
}

// respond publishes a reply through the default exchange to the request's
// reply_to, with its correlation id.
func (c *conn) respond(ctx context.Context, subject, replyTo, corr string, rep *driver.Message) error {
	if replyTo == "" {
		return fmt.Errorf("amqpbus: respond to %s: the request has no reply_to: %w", subject, driver.ErrInvalid)
	}
	if err := c.ready(ctx, "respond to", subject); err != nil {
		return err
	}
	pub, err := toPublishing(rep, kindReply, noBudget)
	if err != nil {
		return err
	}
	pub.CorrelationId = corr
	p, err := c.replies.get("respond to", subject)
	if err != nil {
		return err
	}
	return wrapErr("respond to", subject, p.ch.PublishWithContext(ctx, "", replyTo, false, false, pub))
}

// Send implements driver.Conn: a transient publish to the message exchange,
// without confirmation. All sends of a connection go through one channel,
// so they arrive in order.
func (c *conn) Send(ctx context.Context, msg *driver.Message) error {
	if err := c.ready(ctx, "send", msg.Subject); err != nil {
		return err
	}
	key, err := routingKey(msg.Subject)
	if err != nil {
		return err
	}
	pub, err := toPublishing(msg, kindMessage, noBudget)
	if err != nil {
		return err
	}
	p, err := c.sends.get("send", msg.Subject)
	if err != nil {
		return err
	}
	return wrapErr("send", msg.Subject, p.ch.PublishWithContext(ctx, c.msgX, key, false, false, pub))
}

// Listen implements driver.Conn with a private server-named queue bound to
// the message exchange: it gets sends and requests alike, as on NATS.
func (c *conn) Listen(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.live(ctx, "listen", c.msgX, pattern, fn)
}

// Tail implements driver.Conn with a private server-named queue bound to
// the durable-topic exchange: it sees what is published from now on and
// takes nothing from any group's queue.
func (c *conn) Tail(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.live(ctx, "tail", c.evtX, pattern, fn)
}

func (c *conn) live(ctx context.Context, op, exchange, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	key, err := bindingKey(pattern)
	if err != nil {
		return nil, err
	}
	s := &consumer{op: op, what: pattern, prefetch: c.cfg.prefetch}
	s.setup = func(ch *amqp.Channel) (string, error) {
		q, err := ch.QueueDeclare("", false, true, true, false, exclusiveArgs)
		if err != nil {
			return "", err
		}
		return q.Name, ch.QueueBind(q.Name, key, exchange, false, nil)
	}
	s.deliver = func(ch *amqp.Channel, d *amqp.Delivery) {
		k := kindEvent
		if exchange == c.msgX {
			k = requestKind(d)
		}
		fn(fromDelivery(d.RoutingKey, k, d))
		_ = ch.Ack(d.DeliveryTag, false)
	}
	return c.startConsumer(ctx, s)
}
