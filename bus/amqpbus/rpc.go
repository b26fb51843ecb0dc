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

// rpcResult is what a request waiter receives.
type rpcResult struct {
	msg *driver.Message
	err error
}

// rpcChan is a channel for requests: it consumes direct replies and
// returned (unroutable) requests, and hands each to the request waiting
// for it by correlation id. Any number of requests share it.
type rpcChan struct {
	c       *conn
	ch      *amqp.Channel
	mu      sync.Mutex
	waiting map[string]chan rpcResult
	dead    chan struct{} // closed when the channel closed
	reason  error         // why, if the broker said
}

func (c *conn) openRPC(ac *amqp.Connection) (*rpcChan, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, err
	}
	r := &rpcChan{c: c, ch: ch, waiting: map[string]chan rpcResult{}, dead: make(chan struct{})}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	returns := ch.NotifyReturn(make(chan amqp.Return, 16))
	replies, err := ch.Consume(directReplyTo, "sb-replies-"+newID(), true, false, false, false, nil)
	if err != nil {
		_ = ch.Close()
		return nil, err
	}
	if !c.spawn(func() { r.loop(closed, returns, replies) }, nil) {
		_ = ch.Close()
		return nil, driver.ErrClosed
	}
	return r, nil
}

func (r *rpcChan) loop(closed <-chan *amqp.Error, returns <-chan amqp.Return, replies <-chan amqp.Delivery) {
	for closed != nil || returns != nil || replies != nil {
		select {
		case err, ok := <-closed:
			if !ok {
				closed = nil
				continue
			}
			if err != nil {
				r.mu.Lock()
				r.reason = err
				r.mu.Unlock()
			}
		case ret, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			r.resolve(ret.CorrelationId, rpcResult{err: fmt.Errorf("amqpbus: request %s: %w (returned by the broker: %d %s)",
				ret.RoutingKey, driver.ErrNoResponders, ret.ReplyCode, ret.ReplyText)})
		case d, ok := <-replies:
			if !ok {
				replies = nil
				continue
			}
			r.resolve(d.CorrelationId, rpcResult{msg: fromDelivery("", kindReply, &d)})
		}
	}
	r.mu.Lock()
	close(r.dead)
	r.mu.Unlock()
}

func (r *rpcChan) resolve(id string, res rpcResult) {
	r.mu.Lock()
	w, ok := r.waiting[id]
	delete(r.waiting, id)
	r.mu.Unlock()
	if ok {
		w <- res // buffered, one result per waiter
	}
}

// register makes a waiter for the reply to correlation id.
func (r *rpcChan) register(id string) (chan rpcResult, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.dead:
		return nil, false
	default:
	}
	w := make(chan rpcResult, 1)
	r.waiting[id] = w
	return w, true
}

func (r *rpcChan) unregister(id string) {
	r.mu.Lock()
	delete(r.waiting, id)
	r.mu.Unlock()
}

func (r *rpcChan) closeReason() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reason
}

func (r *rpcChan) alive() bool {
	select {
	case <-r.dead:
		return false
	default:
		return !r.ch.IsClosed()
	}
}

func (r *rpcChan) close() { _ = r.ch.Close() }

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
	id := newID()
	w, ok := r.register(id)
	if !ok {
		return nil, c.lostErr("request", msg.Subject, r.closeReason())
	}
	defer r.unregister(id)
	pub.CorrelationId = id
	pub.ReplyTo = directReplyTo
	if err := r.ch.PublishWithContext(ctx, c.cfg.msgExchange(), key, true, false, pub); err != nil {
		return nil, wrapErr("request", msg.Subject, err)
	}
	select {
	case res := <-w:
		if res.err != nil {
			return nil, res.err
		}
		res.msg.Subject = msg.Subject
		return res.msg, nil
	case <-ctx.Done():
		return nil, wrapErr("request", msg.Subject, ctx.Err())
	case <-r.dead:
		// A reply that raced the close is still good.
		select {
		case res := <-w:
			if res.err == nil {
				res.msg.Subject = msg.Subject
				return res.msg, nil
			}
		default:
		}
		return nil, c.lostErr("request", msg.Subject, r.closeReason())
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
	exchange := c.cfg.msgExchange()
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
		_ = ch.Ack(d.DeliveryTag, false)
		replyTo, corr := d.ReplyTo, d.CorrelationId
		fn(fromDelivery(d.RoutingKey, requestKind(d), d), func(ctx context.Context, rep *driver.Message) error {
			return c.respond(ctx, d.RoutingKey, replyTo, corr, rep)
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
	return wrapErr("send", msg.Subject, p.ch.PublishWithContext(ctx, c.cfg.msgExchange(), key, false, false, pub))
}

// Listen implements driver.Conn with a private server-named queue bound to
// the message exchange: it gets sends and requests alike, as on NATS.
func (c *conn) Listen(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.live(ctx, "listen", c.cfg.msgExchange(), pattern, fn)
}

// Tail implements driver.Conn with a private server-named queue bound to
// the durable-topic exchange: it sees what is published from now on and
// takes nothing from any group's queue.
func (c *conn) Tail(ctx context.Context, pattern string, fn func(*driver.Message)) (driver.Subscription, error) {
	return c.live(ctx, "tail", c.cfg.evtExchange(), pattern, fn)
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
		if exchange == c.cfg.msgExchange() {
			k = requestKind(d)
		}
		fn(fromDelivery(d.RoutingKey, k, d))
		_ = ch.Ack(d.DeliveryTag, false)
	}
	return c.startConsumer(ctx, s)
}
