package bus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/bus/driver"
	"github.com/switchboard-dev/switchboard/internal/lazyctx"
)

// Defaults used when a caller does not say otherwise.
var (
	// DefaultRequestTimeout bounds a Request or Publish whose context has no
	// deadline.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultShutdownTimeout bounds how long Close waits for handlers.
	DefaultShutdownTimeout = 30 * time.Second
)

// Headers set by package bus on dead-lettered messages.
const (
	HeaderDeadReason   = "Sb-Dead-Reason"   // the last handler error
	HeaderDeadAttempts = "Sb-Dead-Attempts" // deliveries made before giving up
	HeaderDeadTopic    = "Sb-Dead-Topic"    // the original topic
	HeaderDeadGroup    = "Sb-Dead-Group"    // the consumer group that gave up
	HeaderDeadTime     = "Sb-Dead-Time"     // RFC 3339 time of dead-lettering
	HeaderDeadID       = "Sb-Dead-Id"       // the original message ID, if any
)

// DeadLetterTopic is the durable topic where group's failed messages of topic
// are kept, with the Dead headers above. Consume it like any topic to inspect
// or replay dead letters.
func DeadLetterTopic(group, topic string) string { return "_dlq." + group + "." + topic }

// RequestHandler serves one request and returns the reply to send. Returning
// nil sends no reply (the caller times out). ctx is canceled when the
// subscription stops past its shutdown bound.
type RequestHandler func(ctx context.Context, req *Message) *Message

// Handler consumes one durable delivery. Returning nil acknowledges it;
// returning an error asks for redelivery after a backoff, and after
// MaxAttempts deliveries the message goes to its dead-letter topic with the
// error as reason.
type Handler func(ctx context.Context, d *Delivery) error

// Delivery is a durable message as delivered to a Handler.
type Delivery struct {
	*Message
	// Attempt is the 1-based delivery count, so a handler can tell a retry.
	Attempt int
	// Group is the consumer group the delivery was made to.
	Group string
}

// Subscription is an active subscription. Stop it to end deliveries.
type Subscription struct {
	conn   *Conn
	drv    driver.Subscription
	ctx    context.Context // handler context; canceled past the stop bound
	cancel context.CancelFunc
	wg     sync.WaitGroup // running handlers
	once   sync.Once
	err    error

	// request subscriptions only
	pool *workerPool

	// durable only
	work chan driver.Delivery
}

// Stop ends deliveries and waits until ctx ends for running handlers and for
// the durable deliveries already buffered in this instance (at most
// Prefetch), which are handled rather than handed back, so that stopping
// does not count as a delivery attempt. If ctx ends first, Stop cancels the
// handlers' context, returns what is still buffered to the group at once and
// waits for the handlers to return. Deliveries the driver had prefetched but
// not passed on go back to the group when the driver stops.
func (s *Subscription) Stop(ctx context.Context) error {
	s.once.Do(func() {
		s.err = wrapDriver("stop", "subscription", s.drv.Stop(ctx))
		if s.work != nil {
			close(s.work)
		}
		if s.pool != nil {
			s.pool.close()
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.cancel()
			<-done
		}
		s.cancel()
		s.conn.untrack(s)
	})
	return s.err
}

func (c *Conn) newSub() *Subscription {
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscription{conn: c, ctx: ctx, cancel: cancel}
}

// Serve calls h for each request sent to subject, each in its own goroutine.
// Subscriptions that share a non-empty queue compete for requests.
func (c *Conn) Serve(ctx context.Context, subject, queue string, h RequestHandler) (*Subscription, error) {
	if err := validateSubject(subject, true); err != nil {
		return nil, err
	}
	if queue != "" && !ValidName(queue) {
		return nil, Errorf(InvalidArgument, "bus: invalid queue %q: use letters, digits, '_' and '-'", queue)
	}
	s := c.newSub()
	if err := c.track(s); err != nil {
		return nil, err
	}
	serve := func(j serveJob) {
		defer s.wg.Done()
		rep := h(s.ctx, fromDriver(j.req))
		if rep == nil {
			return
		}
		// A reply that is too large is replaced by an error reply so the
		// caller hears about it instead of timing out.
		if err := c.checkSize("reply", rep); err != nil {
			rep = &Message{Header: Header{HeaderBusError: err.Error()}}
		}
		_ = j.respond(s.ctx, toDriver(rep)) // the requester may be gone; nothing to do.
	}
	s.pool = newWorkerPool(serve)
	d, err := c.drv.Serve(ctx, subject, queue, func(req *driver.Message, respond driver.Respond) {
		s.wg.Add(1)
		s.pool.run(serveJob{req, respond})
	})
	if err != nil {
		c.untrack(s)
		return nil, wrapDriver("serve", subject, err)
	}
	s.drv = d
	return s, nil
}

// HeaderBusError is set on a reply that package bus had to replace because
// the handler's reply could not be sent (for example it was too large).
const HeaderBusError = "Sb-Bus-Error"

// Listen calls h for each message sent (with Send) to a subject matching
// pattern. Calls are made one at a time in arrival order.
func (c *Conn) Listen(ctx context.Context, pattern string, h func(*Message)) (*Subscription, error) {
	return c.live(ctx, "listen", pattern, h, c.drv.Listen)
}

// Tail calls h for each durable message published from now on to a topic
// matching pattern, without acknowledging anything or affecting groups. It is
// for live views such as `switchboard watch`.
func (c *Conn) Tail(ctx context.Context, pattern string, h func(*Message)) (*Subscription, error) {
	return c.live(ctx, "tail", pattern, h, c.drv.Tail)
}

func (c *Conn) live(ctx context.Context, op, pattern string, h func(*Message),
	start func(context.Context, string, func(*driver.Message)) (driver.Subscription, error)) (*Subscription, error) {
	if err := validateSubject(pattern, true); err != nil {
		return nil, err
	}
	s := c.newSub()
	if err := c.track(s); err != nil {
		return nil, err
	}
	d, err := start(ctx, pattern, func(m *driver.Message) { h(fromDriver(m)) })
	if err != nil {
		c.untrack(s)
		return nil, wrapDriver(op, pattern, err)
	}
	s.drv = d
	return s, nil
}

// SubscribeOptions tune a durable subscription. The zero value is a safe
// default for production.
type SubscribeOptions struct {
	// Concurrency is how many handlers run at once in this instance
	// (default 1: in order within the instance).
	Concurrency int
	// Prefetch bounds deliveries buffered for this instance beyond those
	// being handled (default Concurrency).
	Prefetch int
	// MaxAttempts is how many deliveries a message gets before it is
	// dead-lettered (default 5).
	MaxAttempts int
	// Backoff returns the delay before redelivery after the attempt-th
	// failure (default: exponential from 200ms, capped at 30s, with jitter).
	Backoff func(attempt int) time.Duration
	// AckWait is how long the broker waits before redelivering a message
	// whose handler neither finished nor failed, e.g. because the process
	// died (default 30s).
	AckWait time.Duration
	// NoDeadLetter drops, instead of dead-lettering, a message that
	// exhausted its attempts. Off by default: nothing is lost silently.
	NoDeadLetter bool
	// Observe, if set, is told how each delivery was settled, after the
	// ack, nak or dead-lettering: for metrics and health. It runs on the
	// handler's goroutine, so it must be fast and safe for concurrent use.
	Observe func(Settled)
}

// Outcome says how package bus settled one durable delivery.
type Outcome int

// The outcomes of a delivery.
const (
	// Acked: the handler succeeded and the message was acknowledged.
	Acked Outcome = iota
	// Retried: the handler failed and redelivery was asked for.
	Retried
	// DeadLettered: the handler failed its last attempt and the message
	// was stored on its dead-letter topic.
	DeadLettered
	// Dropped: the handler failed its last attempt and NoDeadLetter was set.
	Dropped
	// Skipped: a replayed dead letter addressed to another group,
	// acknowledged without calling the handler.
	Skipped
)

var outcomeNames = [...]string{"acked", "retried", "dead_lettered", "dropped", "skipped"}

// String returns the outcome as used in metric labels: "acked", "retried",
// "dead_lettered", "dropped" or "skipped".
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Settled describes one settled delivery, for SubscribeOptions.Observe.
type Settled struct {
	Topic, Group string
	// Attempt is the 1-based delivery count: more than 1 is a redelivery.
	Attempt int
	Outcome Outcome
	// Err is the handler's error (nil when Acked or Skipped).
	Err error
	// Duration is how long the handler ran.
	Duration time.Duration
}

// ExponentialBackoff returns a backoff doubling from base up to max, with up
// to 20% random jitter so that retries from many consumers spread out.
func ExponentialBackoff(base, max time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < max; i++ {
			d *= 2
		}
		d = min(d, max)
		return d - time.Duration(rand.Int64N(int64(d)/5+1))
	}
}

func (o *SubscribeOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Prefetch <= 0 {
		o.Prefetch = o.Concurrency
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == nil {
		o.Backoff = ExponentialBackoff(200*time.Millisecond, 30*time.Second)
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
}

// Subscribe joins consumer group on topic and calls h for each message.
// Members of one group compete; each group gets every message. A message is
// acknowledged only after h returned nil. On error it is redelivered after
// opts.Backoff, and after opts.MaxAttempts deliveries it is published to
// DeadLetterTopic(group, topic) with the reason and then acknowledged.
func (c *Conn) Subscribe(ctx context.Context, topic, group string, h Handler, opts SubscribeOptions) (*Subscription, error) {
	if err := validateSubject(topic, false); err != nil {
		return nil, err
	}
	if !ValidName(group) {
		return nil, Errorf(InvalidArgument, "bus: invalid consumer group %q: use letters, digits, '_' and '-'", group)
	}
	opts.defaults()
	s := c.newSub()
	s.work = make(chan driver.Delivery, opts.Prefetch)
	if err := c.track(s); err != nil {
		return nil, err
	}
	spec := driver.SubscribeSpec{Topic: topic, Group: group, Prefetch: opts.Prefetch + opts.Concurrency, AckWait: opts.AckWait}
	for range opts.Concurrency {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for d := range s.work {
				if s.ctx.Err() != nil { // stopping: give it back at once
					_ = d.Nak(context.Background(), 0)
					continue
				}
				c.handle(s.ctx, topic, group, h, opts, d)
			}
		}()
	}
	var mu sync.Mutex
	stopped := false
	d, err := c.drv.Subscribe(ctx, spec, func(d driver.Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			_ = d.Nak(context.Background(), 0)
			return
		}
		select {
		case s.work <- d:
		case <-s.ctx.Done():
			_ = d.Nak(context.Background(), 0)
		}
	})
	if err != nil {
		close(s.work)
		s.wg.Wait()
		s.cancel()
		c.untrack(s)
		return nil, wrapDriver("subscribe", topic, err)
	}
	s.drv = stopGuard{d, func() { mu.Lock(); stopped = true; mu.Unlock() }}
	return s, nil
}

// stopGuard marks the subscription stopped after the driver stopped it, so a
// late callback cannot send on the closed work channel.
type stopGuard struct {
	driver.Subscription
	after func()
}

func (g stopGuard) Stop(ctx context.Context) error {
	err := g.Subscription.Stop(ctx)
	g.after()
	return err
}

func (c *Conn) handle(ctx context.Context, topic, group string, h Handler, opts SubscribeOptions, d driver.Delivery) {
	m := fromDriver(d.Message())
	attempt := d.Attempt()
	if skipReplay(m.Header, group) { // another group's replayed dead letter
		actx, cancel := settleContext()
		defer cancel()
		_ = d.Ack(actx)
		opts.observe(Settled{Topic: topic, Group: group, Attempt: attempt, Outcome: Skipped})
		return
	}
	start := time.Now()
	err := safeCall(ctx, h, &Delivery{Message: m, Attempt: attempt, Group: group})
	took := time.Since(start)
	actx, cancel := settleContext()
	defer cancel()
	if err == nil {
		_ = d.Ack(actx) // a lost ack means a redelivery, never a loss
		opts.observe(Settled{Topic: topic, Group: group, Attempt: attempt, Outcome: Acked, Duration: took})
		return
	}
	retried := Settled{Topic: topic, Group: group, Attempt: attempt, Outcome: Retried, Err: err, Duration: took}
	if attempt < opts.MaxAttempts {
		delay := opts.Backoff(attempt)
		if ra, ok := RetryAfter(err); ok {
			delay = ra
		}
		_ = d.Nak(actx, delay)
		opts.observe(retried)
		return
	}
	if !opts.NoDeadLetter {
		dead := &Message{Subject: DeadLetterTopic(group, topic), Header: m.Header.Clone(), Body: m.Body}
		// One line: NATS headers cannot carry line breaks (errors.Join makes them).
		dead.Header[HeaderDeadReason] = strings.Join(strings.Fields(err.Error()), " ")
		dead.Header[HeaderDeadAttempts] = strconv.Itoa(attempt)
		dead.Header[HeaderDeadTopic] = m.Subject
		dead.Header[HeaderDeadGroup] = group
		dead.Header[HeaderDeadTime] = time.Now().UTC().Format(time.RFC3339Nano)
		if m.ID != "" {
			dead.Header[HeaderDeadID] = m.ID
			dead.ID = "dead:" + group + ":" + m.ID
		}
		if perr := c.Publish(actx, dead); perr != nil {
			// Not stored as a dead letter: keep the original alive instead.
			_ = d.Nak(actx, opts.Backoff(attempt))
			opts.observe(retried)
			return
		}
	}
	_ = d.Ack(actx)
	retried.Outcome = DeadLettered
	if opts.NoDeadLetter {
		retried.Outcome = Dropped
	}
	opts.observe(retried)
}

// settleTimeout bounds what settling a delivery may wait for: its Ack, Nak
// or dead-letter publish.
const settleTimeout = 10 * time.Second

// settleContext is the context a delivery is settled with, bounded by
// settleTimeout. Its timer starts only if something waits on it: the
// drivers' acks do not (a lost ack means a redelivery), so the usual
// settlement costs no timer.
func settleContext() (context.Context, context.CancelFunc) {
	return lazyctx.New(context.Background(), time.Now().Add(settleTimeout))
}

func (o *SubscribeOptions) observe(s Settled) {
	if o.Observe != nil {
		o.Observe(s)
	}
}

// safeCall runs h, turning a panic into an Internal error.
func safeCall(ctx context.Context, h Handler, d *Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Errorf(Internal, "bus: handler panicked: %v", r)
		}
	}()
	return h(ctx, d)
}

// String describes the delivery for logs.
func (d *Delivery) String() string {
	return fmt.Sprintf("%s (attempt %d, group %s)", d.Subject, d.Attempt, d.Group)
}

type serveJob struct {
	req     *driver.Message
	respond driver.Respond
}

// workerPool runs request handlers on reused goroutines: a request goes to
// an idle worker if there is one, else to a new one, so concurrency is not
// capped here (the SDK's bulkheads do that) while the common case avoids a
// fresh goroutine and its stack growth per request.
//
// The idle worker that takes a request is the one that became idle last
// (a stack, not a queue), so that after a burst has left many idle workers,
// sequential requests keep going to the same one, whose stack is warm in
// the cache, rather than around all of them; the others stay idle and exit
// after workerIdle. A reaper, running only while workers are idle, makes
// them exit, so that a request pays no timer of its own.
type workerPool struct {
	fn      func(serveJob)
	idleFor time.Duration // workerIdle, but for tests

	mu     sync.Mutex
	idle   []*worker // the one idle longest first
	tick   uint64    // reaper rounds so far
	reaper *time.Timer
	closed bool
}

// worker is an idle or busy worker goroutine: jobs hands it its next
// request (one at a time, so the send never blocks) and is closed to make
// it exit.
type worker struct {
	jobs chan serveJob
	tick uint64 // the pool's tick when it became idle
}

// workerIdle is how long a worker stays idle before it exits (between
// workerIdle and 1.5 times it: the reaper runs every workerIdle/2).
const workerIdle = 10 * time.Second

func newWorkerPool(fn func(serveJob)) *workerPool { return &workerPool{fn: fn, idleFor: workerIdle} }

func (p *workerPool) run(j serveJob) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.jobs <- j
		return
	}
	p.mu.Unlock()
	go p.work(&worker{jobs: make(chan serveJob, 1)}, j)
}

func (p *workerPool) work(w *worker, j serveJob) {
	for {
		p.fn(j)
		if !p.park(w) {
			return
		}
		var ok bool
		if j, ok = <-w.jobs; !ok {
			return
		}
	}
}

// park puts w on the idle stack; false means the pool is closed and w
// should exit.
func (p *workerPool) park(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	w.tick = p.tick
	p.idle = append(p.idle, w)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(p.idleFor/2, p.reap)
	}
	return true
}

// reap makes the workers that have been idle for three reaper rounds (at
// least idleFor) exit, and runs again while any worker is idle.
func (p *workerPool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reaper = nil
	if p.closed {
		return
	}
	p.tick++
	n := 0
	for n < len(p.idle) && p.tick-p.idle[n].tick >= 3 {
		close(p.idle[n].jobs)
		n++
	}
	rest := copy(p.idle, p.idle[n:])
	clear(p.idle[rest:])
	p.idle = p.idle[:rest]
	if len(p.idle) > 0 {
		p.reaper = time.AfterFunc(p.idleFor/2, p.reap)
	}
}

// close lets idle workers exit; busy ones exit when their job ends.
func (p *workerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	for _, w := range p.idle {
		close(w.jobs)
	}
	clear(p.idle)
	p.idle = nil
}

// idleWorkers returns how many workers are idle, for tests.
func (p *workerPool) idleWorkers() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}
