package amqpbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/switchboard-dev/switchboard/bus/driver"
)

// Sizes of the channel pools of a connection. Durable publishes and replies
// are spread over several channels so that one slow or broken channel does
// not hold up the others; sends use one channel so that they keep their
// order. Each request in flight has a channel of its own (rpcChans).
const (
	confirmChannels = 4
	replyChannels   = 4
)

// conn implements driver.Conn over one AMQP connection that it replaces
// when it is lost.
type conn struct {
	cfg        *config
	log        *slog.Logger
	msgX, evtX string // the exchanges' names, made once

	mu        sync.Mutex
	closed    bool
	ac        *amqp.Connection // nil while disconnected
	up        chan struct{}    // closed while connected; replaced when the connection is lost
	consumers map[*consumer]struct{}
	declared  map[string]struct{} // durable queues declared, for tests' cleanup
	unrouted  map[string]struct{} // topics whose unrouted publish was logged
	host      int                 // next host of cfg.uris to dial

	rpc     *rpcChans
	confirm *pool[*confirmChan] // durable publishes
	checked *pool[*confirmChan] // retries and replays, which must reach a queue
	replies *pool[*plainChan]
	sends   *pool[*plainChan]
	admin   *pool[*plainChan] // declarations outside consumers

	blocked     atomic.Bool   // the broker blocks publishers (a resource alarm)
	disconnects atomic.Int64  // connection losses, for tests
	changed     chan struct{} // closed and replaced on every loss and recovery (of the connection or a consumer), for tests
	stop        chan struct{}
	wg          sync.WaitGroup // the watcher and every channel's goroutine
}

var _ driver.Conn = (*conn)(nil)

func openURL(ctx context.Context, u *url.URL) (driver.Conn, error) {
	cfg, err := parseURL(u)
	if err != nil {
		return nil, err
	}
	return open(ctx, cfg)
}

func open(ctx context.Context, cfg *config) (*conn, error) {
	c := &conn{
		cfg:       cfg,
		log:       slog.Default().With("url", cfg.shown, "name", cfg.name),
		msgX:      cfg.msgExchange(),
		evtX:      cfg.evtExchange(),
		up:        make(chan struct{}),
		consumers: map[*consumer]struct{}{},
		declared:  map[string]struct{}{},
		unrouted:  map[string]struct{}{},
		changed:   make(chan struct{}),
		stop:      make(chan struct{}),
	}
	c.rpc = &rpcChans{c: c}
	c.confirm = newPool(c, confirmChannels, c.openConfirm)
	c.checked = newPool(c, 1, c.openChecked)
	c.replies = newPool(c, replyChannels, c.openPlain)
	c.sends = newPool(c, 1, c.openPlain)
	c.admin = newPool(c, 1, c.openPlain)

	// The first connection tries each host once and fails promptly: a wrong
	// URL is reported to the caller rather than retried for ever.
	var errs []error
	for range cfg.uris {
		ac, err := c.dial(ctx)
		if err == nil {
			c.connected(ac)
			c.spawn(func() { c.watch(ac) }, nil)
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dial connects to the next host and declares the exchanges.
func (c *conn) dial(ctx context.Context) (*amqp.Connection, error) {
	c.mu.Lock()
	uri := c.cfg.uris[c.host%len(c.cfg.uris)]
	c.host++
	c.mu.Unlock()
	shown := uri
	if u, err := url.Parse(uri); err == nil {
		u.RawQuery = ""
		shown = u.Redacted()
	}
	if err := ctx.Err(); err != nil {
		return nil, wrapErr("connect to", shown, err)
	}
	timeout := c.cfg.connectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)), time.Millisecond)
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.cfg.name)
	ac, err := amqp.DialConfig(uri, amqp.Config{
		Heartbeat:  c.cfg.heartbeat,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			nc, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// A deadline for the TLS and AMQP handshakes, which amqp091-go
			// clears once the connection is open.
			if err := nc.SetDeadline(time.Now().Add(timeout)); err != nil {
				nc.Close()
				return nil, err
			}
			return nc, nil
		},
	})
	if err != nil {
		err = wrapErr("connect to", shown, err)
		if !errors.Is(err, driver.ErrDisconnected) && !errors.Is(err, driver.ErrTimeout) && !errors.Is(err, driver.ErrCanceled) {
			err = fmt.Errorf("%w: %w", driver.ErrDisconnected, err)
		}
		return nil, err
	}
	if err := c.declareExchanges(ac); err != nil {
		_ = ac.Close()
		return nil, err
	}
	// A broker short of memory or disk blocks publishing connections
	// (connection.blocked): publishes would hang in the socket, past their
	// deadlines, so they fail fast instead until it unblocks.
	blocks := ac.NotifyBlocked(make(chan amqp.Blocking, 1))
	c.spawn(func() {
		for b := range blocks {
			c.blocked.Store(b.Active)
			if b.Active {
				c.log.Warn("amqpbus: RabbitMQ blocks publishing on this connection (resource alarm)", "reason", b.Reason)
			} else {
				c.log.Info("amqpbus: RabbitMQ unblocked publishing on this connection")
			}
		}
		c.blocked.Store(false)
	}, nil)
	return ac, nil
}

// declareExchanges declares the two topic exchanges, durable so that they
// outlive the connection and plain clients find them.
func (c *conn) declareExchanges(ac *amqp.Connection) error {
	ch, err := ac.Channel()
	if err != nil {
		return wrapErr("open channel on", c.cfg.shown, err)
	}
	defer ch.Close()
	for _, x := range []string{c.cfg.msgExchange(), c.cfg.evtExchange()} {
		if err := ch.ExchangeDeclare(x, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			err = wrapErr("declare exchange", x, err)
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
				return fmt.Errorf("%w; an exchange of this name exists with other settings: choose another prefix=", err)
			}
			return err
		}
	}
	return nil
}

func (c *conn) connected(ac *amqp.Connection) {
	c.mu.Lock()
	c.ac = ac
	close(c.up)
	c.mu.Unlock()
}

// watch replaces the connection whenever it is lost, until Close.
func (c *conn) watch(ac *amqp.Connection) {
	for {
		lost := ac.NotifyClose(make(chan *amqp.Error, 1))
		var reason *amqp.Error
		select {
		case reason = <-lost:
		case <-c.stop:
			return
		}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return
		}
		c.ac = nil
		c.up = make(chan struct{})
		c.disconnects.Add(1)
		c.notifyChanged()
		c.mu.Unlock()
		c.log.Warn("amqpbus: connection to RabbitMQ lost; reconnecting", "err", reason)

		for attempt := 1; ; attempt++ {
			select {
			case <-time.After(reconnectDelay(attempt)):
			case <-c.stop:
				return
			}
			// Close interrupts a dial in progress.
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			next, err := c.dial(ctx)
			cancel()
			if err != nil {
				c.log.Debug("amqpbus: reconnect failed", "attempt", attempt, "err", err)
				continue
			}
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				_ = next.Close()
				return
			}
			c.ac = next
			close(c.up)
			c.notifyChanged()
			c.mu.Unlock()
			c.log.Info("amqpbus: reconnected to RabbitMQ", "attempts", attempt)
			ac = next
			break
		}
	}
}

// notifyChanged wakes whoever waits for a change of state. Call with mu
// held.
func (c *conn) notifyChanged() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// reconnectDelay is the wait before reconnect attempt n (from 1): doubling
// from 100ms up to 5s, drawn from the upper half of that so that clients
// spread out.
func reconnectDelay(attempt int) time.Duration {
	d := min(100*time.Millisecond<<min(max(attempt-1, 0), 6), 5*time.Second)
	return d/2 + mrand.N(d/2+1)
}

// current returns the live connection, or fails fast.
func (c *conn) current(op, subject string) (*amqp.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, fmt.Errorf("amqpbus: %s %s: %w", op, subject, driver.ErrClosed)
	}
	if c.ac == nil || c.ac.IsClosed() {
		return nil, fmt.Errorf("amqpbus: %s %s: %w (reconnecting)", op, subject, driver.ErrDisconnected)
	}
	return c.ac, nil
}

// ready fails fast when a call that publishes cannot go through now.
func (c *conn) ready(ctx context.Context, op, subject string) error {
	if _, err := c.current(op, subject); err != nil {
		return err
	}
	if c.blocked.Load() {
		return fmt.Errorf("amqpbus: %s %s: %w (the broker blocks publishers: a memory or disk alarm)", op, subject, driver.ErrDisconnected)
	}
	if err := ctx.Err(); err != nil {
		return wrapErr(op, subject, err)
	}
	return nil
}

// waitUp blocks until the connection is up and returns it, or returns nil
// when stop is closed or the connection is closed for good.
func (c *conn) waitUp(stop <-chan struct{}) *amqp.Connection {
	for {
		c.mu.Lock()
		closed, ac, up := c.closed, c.ac, c.up
		c.mu.Unlock()
		if closed {
			return nil
		}
		if ac != nil && !ac.IsClosed() {
			return ac
		}
		select {
		case <-up:
		case <-stop:
			return nil
		case <-c.stop:
			return nil
		}
	}
}

// lostErr is the error of a call whose channel closed under it.
func (c *conn) lostErr(op, subject string, reason error) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return fmt.Errorf("amqpbus: %s %s: %w", op, subject, driver.ErrClosed)
	case reason == nil:
		return fmt.Errorf("amqpbus: %s %s: %w", op, subject, driver.ErrDisconnected)
	}
	// The broker's reason decides (a message over its size limit closes the
	// channel, for one); without a sentinel of its own it is a lost channel.
	err := wrapErr(op, subject, fmt.Errorf("channel closed: %w", reason))
	for _, s := range []error{driver.ErrTooLarge, driver.ErrInvalid, driver.ErrDisconnected} {
		if errors.Is(err, s) {
			return err
		}
	}
	return fmt.Errorf("amqpbus: %s %s: %w: channel closed: %w", op, subject, driver.ErrDisconnected, reason)
}

func (c *conn) noteDeclared(queue string) {
	c.mu.Lock()
	c.declared[queue] = struct{}{}
	c.mu.Unlock()
}

// noteUnrouted logs, once per topic, a durable publish no queue took.
func (c *conn) noteUnrouted(topic string) {
	c.mu.Lock()
	_, seen := c.unrouted[topic]
	if !seen && len(c.unrouted) < 1000 {
		c.unrouted[topic] = struct{}{}
	}
	c.mu.Unlock()
	if !seen {
		c.log.Debug("amqpbus: durable publish reached no queue: no consumer group exists on the topic yet, so no group is owed it", "topic", topic)
	}
}

// MaxMessageSize implements driver.Conn.
func (c *conn) MaxMessageSize() int { return c.cfg.maxMessageSize }

// Close implements driver.Conn. Subscriptions end without waiting for
// their deliveries to be settled (the broker redelivers what was not
// acknowledged), pending calls fail with ErrClosed, and the connection is
// closed.
func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cons := make([]*consumer, 0, len(c.consumers))
	for s := range c.consumers {
		cons = append(cons, s)
	}
	ac := c.ac
	c.ac = nil
	c.mu.Unlock()
	close(c.stop)
	now, cancel := context.WithCancel(context.Background())
	cancel()
	for _, s := range cons {
		_ = s.Stop(now)
	}
	for _, p := range []interface{ close() }{c.rpc, c.confirm, c.checked, c.replies, c.sends, c.admin} {
		p.close()
	}
	var err error
	if ac != nil && !ac.IsClosed() {
		if cerr := ac.CloseDeadline(time.Now().Add(5 * time.Second)); cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
			err = wrapErr("close", c.cfg.shown, cerr)
		}
	}
	c.wg.Wait()
	return err
}

// spawn runs f on a goroutine that Close waits for, unless the connection
// is closed (false). before, if set, runs first under the same lock.
func (c *conn) spawn(f func(), before func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	if before != nil {
		before()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

func (c *conn) untrack(s *consumer) {
	c.mu.Lock()
	delete(c.consumers, s)
	c.mu.Unlock()
}

// newID returns a random id for correlation ids and consumer tags.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// channel is what a pool holds: an AMQP channel with its goroutine.
type channel interface {
	alive() bool
	close()
}

// pool hands out channels of one kind, opening them on first use and again
// after they closed (a broker error or a lost connection).
type pool[T channel] struct {
	c     *conn
	open  func(*amqp.Connection) (T, error)
	slots []slot[T]
	next  atomic.Uint32
}

type slot[T channel] struct {
	mu  sync.Mutex
	v   T
	set bool
}

func newPool[T channel](c *conn, n int, open func(*amqp.Connection) (T, error)) *pool[T] {
	return &pool[T]{c: c, open: open, slots: make([]slot[T], n)}
}

// get returns a live channel, opening one when needed; it fails fast while
// disconnected.
func (p *pool[T]) get(op, subject string) (T, error) {
	s := &p.slots[int(p.next.Add(1))%len(p.slots)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.set && s.v.alive() {
		return s.v, nil
	}
	var zero T
	ac, err := p.c.current(op, subject)
	if err != nil {
		return zero, err
	}
	v, err := p.open(ac)
	if err != nil {
		return zero, wrapErr(op, subject, err)
	}
	s.v, s.set = v, true
	return v, nil
}

func (p *pool[T]) close() {
	for i := range p.slots {
		s := &p.slots[i]
		s.mu.Lock()
		if s.set {
			s.v.close()
		}
		s.mu.Unlock()
	}
}

// plainChan is a channel for publishes nobody confirms (sends, replies)
// and for declarations.
type plainChan struct {
	ch   *amqp.Channel
	dead chan struct{}
	// callMu serialises synchronous methods (declarations): amqp091-go
	// matches a reply to whichever call waits, so they must not overlap on
	// one channel. Publishes need no lock.
	callMu sync.Mutex
}

func (c *conn) openPlain(ac *amqp.Connection) (*plainChan, error) {
	ch, err := ac.Channel()
	if err != nil {
		return nil, err
	}
	p := &plainChan{ch: ch, dead: make(chan struct{})}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if !c.spawn(func() {
		for range closed {
		}
		close(p.dead)
	}, nil) {
		_ = ch.Close()
		return nil, driver.ErrClosed
	}
	return p, nil
}

func (p *plainChan) alive() bool {
	select {
	case <-p.dead:
		return false
	default:
		return !p.ch.IsClosed()
	}
}

func (p *plainChan) close() { _ = p.ch.Close() }
