package amqpbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// consumer is a subscription of any kind (Serve, Listen, Tail, Subscribe):
// an AMQP consumer with manual acknowledgements on a channel of its own,
// whose queue and consumer are made again whenever the channel or the
// connection is lost, until Stop.
type consumer struct {
	c        *conn
	op       string // serve, listen, tail, subscribe: for errors and logs
	what     string // its subject, pattern or topic
	prefetch int
	// setup declares and binds the queue on a new channel and returns its
	// name.
	setup func(ch *amqp.Channel) (string, error)
	// deliver handles a delivery. It is called from the consumer's
	// goroutine, one at a time, never after Stop returned.
	// deliver hands d over; it must not keep d, which pump reuses.
	deliver func(ch *amqp.Channel, d *amqp.Delivery)

	// Deliveries acknowledged on hand-over (Serve, see handedOver) but not
	// yet told to the broker, and whether another delivery is waiting
	// behind the one being delivered. Only the consumer's goroutine uses
	// them.
	pendingAcks int
	lastTag     uint64
	burst       bool

	mu          sync.Mutex
	ac          *amqp.Connection // the connection of the current channel
	ch          *amqp.Channel    // the current channel
	tag         string           // the current consumer tag
	stopCtx     context.Context
	outstanding int           // deliveries handed over, not yet settled
	idle        chan struct{} // closed when outstanding drops to 0, if waited on

	stop chan struct{} // closed by Stop
	done chan struct{} // closed when run returned
	once sync.Once
}

var _ driver.Subscription = (*consumer)(nil)

// startConsumer makes the consumer's queue and AMQP consumer before it
// returns, so that what is sent afterwards reaches it, then runs it.
func (c *conn) startConsumer(ctx context.Context, s *consumer) (driver.Subscription, error) {
	s.c = c
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	ac, err := c.current(s.op, s.what)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, wrapErr(s.op, s.what, err)
	}
	ds, err := s.start(ac)
	for try := 1; err != nil && try < 3 && isNotFound(err); try++ {
		// A shared auto-delete queue went with its last consumer between
		// our declaration and our consume: declare it again.
		ds, err = s.start(ac)
	}
	if err != nil {
		return nil, wrapErr(s.op, s.what, err)
	}
	if !c.spawn(func() { s.run(ds) }, func() { c.consumers[s] = struct{}{} }) {
		s.closeChannel()
		return nil, fmt.Errorf("amqpbus: %s %s: %w", s.op, s.what, driver.ErrClosed)
	}
	return s, nil
}

func isNotFound(err error) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == amqp.NotFound
}

// start opens a channel, sets its prefetch, sets up the queue and starts
// consuming from it.
func (s *consumer) start(ac *amqp.Connection) (<-chan amqp.Delivery, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (<-chan amqp.Delivery, error) {
		_ = ch.Close()
		return nil, err
	}
	if err := ch.Qos(s.prefetch, 0, false); err != nil {
		return fail(err)
	}
	queue, err := s.setup(ch)
	if err != nil {
		return fail(err)
	}
	tag := "sb-" + s.op + "-" + newID()
	ds, err := ch.Consume(queue, tag, false, false, false, false, nil)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	s.ac, s.ch, s.tag = ac, ch, tag
	s.mu.Unlock()
	return ds, nil
}

func (s *consumer) current() (*amqp.Channel, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch, s.tag
}

func (s *consumer) closeChannel() {
	if ch, _ := s.current(); ch != nil {
		_ = ch.Close()
	}
}

// run delivers until Stop, replacing the consumer when its channel is lost
// (a broken connection, a broker error, a queue deleted under it).
func (s *consumer) run(ds <-chan amqp.Delivery) {
	defer close(s.done)
	for {
		ch, tag := s.current()
		if !s.pump(ch, ds) {
			s.mu.Lock()
			ctx := s.stopCtx
			s.mu.Unlock()
			if ctx.Err() == nil && !ch.IsClosed() {
				// Nothing more arrives after the cancel; what amqp091-go
				// had buffered goes back to the queue at once.
				if err := ch.Cancel(tag, false); err == nil {
					for d := range ds {
						_ = ch.Nack(d.DeliveryTag, false, true)
					}
				}
			}
			return
		}
		_ = ch.Close()
		s.c.log.Debug("amqpbus: consumer lost; restarting", "op", s.op, "subject", s.what)
		for attempt := 1; ; attempt++ {
			ac := s.c.waitUp(s.stop)
			if ac == nil {
				return
			}
			var err error
			if ds, err = s.start(ac); err == nil {
				s.c.mu.Lock()
				s.c.notifyChanged()
				s.c.mu.Unlock()
				break
			}
			level := slog.LevelDebug // usually the connection went again
			if attempt >= 3 {
				level = slog.LevelWarn
			}
			s.c.log.Log(context.Background(), level, "amqpbus: restarting consumer failed", "op", s.op, "subject", s.what, "attempt", attempt, "err", err)
			select {
			case <-time.After(reconnectDelay(attempt)):
			case <-s.stop:
				return
			}
		}
	}
}

// pump delivers from ds until it closes (true) or Stop is called (false).
// It looks one delivery ahead, so that a delivery knows whether another is
// already waiting (see handedOver).
//
// The delivery handed to deliver lives in one variable reused for each
// (deliver keeps no pointer to it), so that a delivery costs no
// allocation of its own.
func (s *consumer) pump(ch *amqp.Channel, ds <-chan amqp.Delivery) bool {
	defer s.flushAcks(ch)
	var d, next amqp.Delivery
	ahead := false // next holds the delivery after d
	for {
		select {
		case <-s.stop:
			if ahead {
				_ = ch.Nack(next.DeliveryTag, false, true) // never handed over
			}
			return false
		default:
		}
		if ahead {
			d = next
		} else {
			select {
			case v, ok := <-ds:
				if !ok {
					return true
				}
				d = v
			case <-s.stop:
				return false
			}
		}
		ahead = false
		closed := false
		select {
		case v, ok := <-ds:
			if ok {
				next, ahead = v, true
			} else {
				closed = true
			}
		default:
		}
		s.burst = ahead
		s.deliver(ch, &d)
		if closed {
			return true
		}
	}
}

// handedOver acknowledges d, which is being handed over, with as few
// basic.ack frames as the existing guarantee allows: when no further
// delivery is waiting it acknowledges d (and any still pending, with
// multiple set) before the hand-over, as each delivery used to be; in a
// burst of deliveries already buffered it acknowledges every ackBatch of
// them, and the rest when the burst ends (or the consumer stops). The
// broker counts the pending ones against the prefetch meanwhile, and a
// channel lost in the burst gives them back to the queue.
func (s *consumer) handedOver(ch *amqp.Channel, d *amqp.Delivery) {
	s.pendingAcks++
	s.lastTag = d.DeliveryTag
	if !s.burst || s.pendingAcks >= s.ackBatch() {
		s.flushAcks(ch)
	}
}

// ackBatch is at most half the prefetch, so that the broker always has
// room to send more while acknowledgements are pending.
func (s *consumer) ackBatch() int { return max(s.prefetch/2, 1) }

func (s *consumer) flushAcks(ch *amqp.Channel) {
	if s.pendingAcks == 0 {
		return
	}
	s.pendingAcks = 0
	_ = ch.Ack(s.lastTag, true)
}

// hold counts a delivery handed over and not yet settled.
func (s *consumer) hold() {
	s.mu.Lock()
	s.outstanding++
	s.mu.Unlock()
}

// settled is called once per held delivery, after its Ack or Nak.
func (s *consumer) settled() {
	s.mu.Lock()
	s.outstanding--
	if s.outstanding == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// waitIdle waits until every held delivery was settled or ctx ends.
func (s *consumer) waitIdle(ctx context.Context) {
	s.mu.Lock()
	if s.outstanding <= 0 {
		s.mu.Unlock()
		return
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// Stop implements driver.Subscription. It cancels the AMQP consumer and
// hands what was buffered but not delivered back to the queue, waits until
// ctx ends for the deliveries already handed over to be acknowledged or
// not, then closes the channel: the broker requeues whatever is still
// unacknowledged. No callback runs after Stop returns.
func (s *consumer) Stop(ctx context.Context) error {
	s.once.Do(func() {
		s.mu.Lock()
		s.stopCtx = ctx
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		s.waitIdle(ctx)
		s.closeChannel()
		s.c.untrack(s)
	})
	return nil
}
