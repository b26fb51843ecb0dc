package dedupe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// DefaultLease is how long a claim lasts unless renewed. A running handler
// renews it every third of it, so it bounds how long a crashed instance's
// events wait before another instance may run them, not how long a handler
// may take.
const DefaultLease = 30 * time.Second

// Outcome is what the middleware decided for one delivery, as passed to an
// observer. The values are fixed words, fit for metric labels.
type Outcome string

// The outcomes.
const (
	// Handled: the handler ran and succeeded; the key is now done.
	Handled Outcome = "handled"
	// Failed: the handler ran and failed; the claim was released so that
	// the redelivery runs it again.
	Failed Outcome = "failed"
	// Duplicate: the key was done already; the delivery was acknowledged
	// without running the handler.
	Duplicate Outcome = "duplicate"
	// InFlight: another holder's lease is live; the delivery was refused
	// (Aborted, with a retry_after of the lease's remaining time) so that
	// the broker redelivers it later.
	InFlight Outcome = "in_flight"
	// StoreError: the store could not be asked; the delivery was refused
	// (Unavailable) rather than risk running the handler twice.
	StoreError Outcome = "store_error"
)

// Option tunes Middleware and Handler.
type Option func(*config)

type config struct {
	store   Store
	lease   time.Duration
	key     func(*switchboard.EventInfo) string
	observe func(key string, o Outcome, err error)
	log     *slog.Logger
}

// WithLease sets the claim's lease (default DefaultLease).
func WithLease(d time.Duration) Option { return func(c *config) { c.lease = d } }

// WithKey replaces how an event's key is made (default Key). Keys of
// different events must differ; a key that is too coarse drops events.
func WithKey(f func(*switchboard.EventInfo) string) Option { return func(c *config) { c.key = f } }

// WithObserver calls f for each delivery with its key, the outcome, and the
// handler's or the store's error if any. f must be quick and safe for
// concurrent use.
func WithObserver(f func(key string, o Outcome, err error)) Option {
	return func(c *config) { c.observe = f }
}

// WithLogger sets where store failures are logged (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

// Key is the default key of an event: its consumer group, topic, source and
// id. The id alone is the idempotency key within one source and topic; the
// group makes each consumer group handle the event once.
func Key(e *switchboard.EventInfo) string {
	return e.Group + " " + e.Type + " " + e.Source + " " + e.ID
}

func newConfig(s Store, opts []Option) *config {
	c := &config{store: s, lease: DefaultLease, key: Key}
	for _, o := range opts {
		o(c)
	}
	if c.store == nil {
		c.store = &Memory{}
	}
	if c.lease <= 0 {
		c.lease = DefaultLease
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c
}

// Middleware returns consumer middleware that runs each event's handler
// once per key (see Key) within s's window. A nil s is a new Memory. Install
// it with switchboard.WithConsumerMiddleware; it then covers every
// subscription of the service.
func Middleware(s Store, opts ...Option) switchboard.ConsumerMiddleware {
	c := newConfig(s, opts)
	return func(next switchboard.EventHandler) switchboard.EventHandler {
		return func(ctx context.Context, ev *switchboard.EventCall) error {
			if ev.Info == nil {
				return next(ctx, ev)
			}
			return c.run(ctx, ev.Info, func(ctx context.Context) error { return next(ctx, ev) })
		}
	}
}

// Handler wraps one subscription's handler so that it runs once per key
// within s's window, like Middleware. A nil s is a new Memory. Called
// outside a subscription (no event in ctx), it just calls fn.
func Handler[E any](s Store, fn func(context.Context, E) error, opts ...Option) func(context.Context, E) error {
	c := newConfig(s, opts)
	return func(ctx context.Context, ev E) error {
		info, ok := switchboard.EventFrom(ctx)
		if !ok {
			return fn(ctx, ev)
		}
		return c.run(ctx, info, func(ctx context.Context) error { return fn(ctx, ev) })
	}
}

type claimKey struct{}

// ClaimFrom returns the claim under which the handler called with ctx runs:
// its key and the token that holds the lease. A store that keeps its state
// where the handler writes its effects can mark the claim done in the
// handler's own transaction with it, so that the effects and the mark
// commit together (see pgdedupe.Store.CompleteTx). It returns false outside
// a handler run by Middleware or Handler.
func ClaimFrom(ctx context.Context) (Claim, bool) {
	c, ok := ctx.Value(claimKey{}).(Claim)
	return c, ok
}

// errLeaseLost is the cause of a handler's context canceled because its
// claim was lost.
var errLeaseLost = fmt.Errorf("%w: another consumer may now handle this event", ErrLeaseLost)

func (c *config) observed(key string, o Outcome, err error) {
	if c.observe != nil {
		c.observe(key, o, err)
	}
}

func (c *config) run(ctx context.Context, info *switchboard.EventInfo, handle func(context.Context) error) error {
	key := c.key(info)
	cl, err := c.store.Claim(ctx, key, c.lease)
	if err != nil {
		c.observed(key, StoreError, err)
		return bus.Errorf(bus.Unavailable, "dedupe: claim event %s: %w", info.ID, err)
	}
	switch cl.Status {
	case Done:
		c.observed(key, Duplicate, nil)
		return nil
	case Busy:
		wait := max(cl.TTL, 10*time.Millisecond)
		c.observed(key, InFlight, nil)
		return bus.Errorf(bus.Aborted, "dedupe: event %s is being handled by another consumer; retry in %v", info.ID, wait).
			WithDetail("retry_after", wait.String())
	case Claimed:
	default:
		return bus.Errorf(bus.Internal, "dedupe: claim event %s: store returned status %v", info.ID, cl.Status)
	}

	hctx, cancel := context.WithCancelCause(context.WithValue(ctx, claimKey{}, cl))
	stop, stopped := make(chan struct{}), make(chan struct{})
	go c.renew(hctx, cl, cancel, stop, stopped)
	succeeded := false
	defer func() {
		close(stop)
		// Cancel before waiting: a renewal blocked behind the handler's
		// own transaction (see ClaimFrom) must not hold up the return.
		cancel(nil)
		<-stopped
		if !succeeded { // failed or panicked: let a redelivery run it
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer rcancel()
			if err := c.store.Release(rctx, cl); err != nil {
				c.log.Warn("dedupe: release failed; a redelivery waits for the lease to expire",
					"event", info.ID, "key", key, "lease", c.lease, "err", err)
			}
		}
	}()
	if err := handle(hctx); err != nil {
		c.observed(key, Failed, err)
		return err
	}
	succeeded = true
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer ccancel()
	if err := c.store.Complete(cctx, cl); err != nil {
		// The work is done: acknowledge it. Only a later duplicate could
		// run it again, once the lease has expired.
		c.log.Warn("dedupe: handler succeeded but marking it done failed",
			"event", info.ID, "key", key, "err", err)
		c.observed(key, Handled, err)
		return nil
	}
	c.observed(key, Handled, nil)
	return nil
}

// renew extends the lease every third of it until stop is closed. If the
// claim is lost it cancels the handler's context.
func (c *config) renew(ctx context.Context, cl Claim, cancel context.CancelCauseFunc, stop <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	t := time.NewTicker(max(c.lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			err := c.store.Extend(ctx, cl, c.lease)
			if errors.Is(err, ErrLeaseLost) {
				c.log.Warn("dedupe: lease lost while the handler runs; canceling it", "key", cl.Key)
				cancel(errLeaseLost)
				return
			}
			if err != nil && ctx.Err() == nil {
				c.log.Warn("dedupe: lease renewal failed; retrying", "key", cl.Key, "err", err)
			}
		}
	}
}
