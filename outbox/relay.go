package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
)

// Defaults of Relay.
const (
	DefaultBatchSize      = 100
	DefaultPollInterval   = 200 * time.Millisecond
	DefaultPublishTimeout = 10 * time.Second
	DefaultRetention      = 24 * time.Hour
)

// Relay publishes an outbox's records and marks them sent. Run any number
// of relays on one outbox, in one process or many: they share the records
// (see the package documentation for what is promised).
//
// Configure the fields before Run; the zero values of the optional ones are
// the defaults. Run, RelayOnce and Stats are safe for concurrent use.
type Relay struct {
	// Store is the outbox to relay. Required.
	Store Store
	// Publisher publishes to the broker, usually the service's *bus.Conn.
	// Required.
	Publisher Publisher
	// BatchSize is how many records one claim takes (default 100).
	BatchSize int
	// PollInterval is how long Run waits for new records after it found
	// none, unless Wake is called (default 200ms). After failures it waits
	// longer, doubling up to 5 s.
	PollInterval time.Duration
	// PublishTimeout bounds one publish (default 10s).
	PublishTimeout time.Duration
	// Retention is how long records marked sent are kept before Run
	// deletes them (default 24h).
	Retention time.Duration
	// OnPublish, if set, is called after each publish attempt with the
	// record and its error (nil: the broker stored it). It must be quick.
	OnPublish func(r Record, err error)
	// Logger receives failures (default slog.Default()).
	Logger *slog.Logger

	wakeOnce sync.Once
	wake     chan struct{}

	published, failed, batches atomic.Int64
}

// Stats are a relay's counts since it was created.
type Stats struct {
	// Published counts records the broker confirmed; a record published
	// again after a crash or a lost mark counts again.
	Published int64
	// Failed counts publish attempts that failed.
	Failed int64
	// Batches counts claims that returned records.
	Batches int64
}

// Stats returns the relay's counts.
func (r *Relay) Stats() Stats {
	return Stats{Published: r.published.Load(), Failed: r.failed.Load(), Batches: r.batches.Load()}
}

func (r *Relay) wakeChan() chan struct{} {
	r.wakeOnce.Do(func() { r.wake = make(chan struct{}, 1) })
	return r.wake
}

// Wake makes a waiting Run look for records at once: call it after
// committing a transaction that enqueued events, to publish them without
// waiting for the poll. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wakeChan() <- struct{}{}:
	default:
	}
}

func (r *Relay) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Run relays until ctx ends, then returns nil. Errors (the database or the
// broker unreachable) are logged and retried with backoff; Run returns an
// error only if the relay is misconfigured.
func (r *Relay) Run(ctx context.Context) error {
	if r.Store == nil || r.Publisher == nil {
		return bus.Errorf(bus.InvalidArgument, "outbox: relay needs a Store and a Publisher")
	}
	poll := orDefault(r.PollInterval, DefaultPollInterval)
	retention := orDefault(r.Retention, DefaultRetention)
	wait := poll
	lastPrune := time.Time{}
	for ctx.Err() == nil {
		n, full, down, err := r.relayOnce(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && down:
			r.logger().Warn("outbox: relay failed; retrying", "err", err, "retry_in", wait)
		case err != nil:
			// A record the broker refused: it stays, with its error, and
			// holds up its key only; the others go on at the usual pace.
			r.logger().Warn("outbox: publish refused; the record is kept and retried", "err", err)
			wait = poll
		case full:
			wait = poll
			continue // more is waiting
		default:
			wait = poll
		}
		if n == 0 && err == nil && time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			if _, err := r.Store.Prune(ctx, time.Now().Add(-retention)); err != nil && ctx.Err() == nil {
				r.logger().Warn("outbox: prune failed", "err", err)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-r.wakeChan():
		}
		t.Stop()
		if err != nil && down {
			wait = min(2*wait, 5*time.Second)
		}
	}
	return nil
}

// RelayOnce claims one batch, publishes what it may and marks it sent. It
// returns how many records it published. A publish error is recorded on
// its record and returned after the batch is finished.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	n, _, _, err := r.relayOnce(ctx)
	return n, err
}

// unreachable reports whether err means the broker is not there, so that
// the rest of the batch would fail too.
func unreachable(err error) bool {
	switch bus.ErrorCode(err) {
	case bus.Unavailable, bus.DeadlineExceeded, bus.Canceled, bus.FailedPrecondition:
		return true
	}
	return errors.Is(err, bus.ErrClosed)
}

// relayOnce is RelayOnce; it also reports whether the batch was full and
// whether the database or the broker is unreachable (down: back off).
func (r *Relay) relayOnce(ctx context.Context) (published int, full, down bool, err error) {
	if r.Store == nil || r.Publisher == nil {
		return 0, false, true, bus.Errorf(bus.InvalidArgument, "outbox: relay needs a Store and a Publisher")
	}
	size := orDefault(r.BatchSize, DefaultBatchSize)
	timeout := orDefault(r.PublishTimeout, DefaultPublishTimeout)
	b, err := r.Store.Claim(ctx, size)
	if err != nil {
		return 0, false, true, fmt.Errorf("outbox: claim: %w", err)
	}
	recs := b.Records()
	if len(recs) > 0 {
		r.batches.Add(1)
	}
	var sent []int64
	failed := map[int64]string{}
	stopped := map[string]bool{} // keys whose order a failure broke in this batch
	var firstErr error
	for _, rec := range recs {
		if ctx.Err() != nil {
			break
		}
		if rec.Key != "" && stopped[rec.Key] {
			continue
		}
		if exp := b.Expires(); !exp.IsZero() && time.Until(exp) < timeout {
			break // the hold could end mid-publish; leave the rest to the next claim
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		perr := r.Publisher.Publish(pctx, rec.Message())
		cancel()
		if r.OnPublish != nil {
			r.OnPublish(rec, perr)
		}
		if perr == nil {
			sent = append(sent, rec.Seq)
			r.published.Add(1)
			continue
		}
		r.failed.Add(1)
		failed[rec.Seq] = perr.Error()
		stopped[rec.Key] = true
		if firstErr == nil {
			firstErr = fmt.Errorf("outbox: publish record %d (event %s on %s): %w", rec.Seq, rec.ID, rec.Topic, perr)
		}
		if unreachable(perr) {
			down = true
			break
		}
	}
	// Mark what the broker has even if ctx ended: otherwise it goes again.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := b.Finish(fctx, sent, failed); err != nil {
		return len(sent), false, true, errors.Join(firstErr, fmt.Errorf("outbox: mark %d records sent: %w", len(sent), err))
	}
	return len(sent), len(recs) == size && firstErr == nil, down, firstErr
}
