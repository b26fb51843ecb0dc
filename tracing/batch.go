package tracing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// spanExporter receives the batches of a batcher.
type spanExporter interface {
	exportSpans(ctx context.Context, spans []finished) error
	Shutdown(ctx context.Context) error
}

// batcher is the Pipeline's span processor: it queues ended, sampled spans
// and hands them to its exporter in batches, as the SDK's
// BatchSpanProcessor does, but without waking its goroutine for every span.
// The SDK's processor sends each span over a channel to a goroutine that
// waits on it, so that every recorded span costs a goroutine wake-up on
// the caller's thread — on a busy machine with few cores, a microsecond or
// more of the call it was recorded in. Here a span is appended to a slice
// under a mutex; the goroutine wakes when a batch is full, when the batch
// timeout ticks, and for ForceFlush and Shutdown.
//
// It also takes the spans that the middleware records without the SDK
// (lightSpan, with add).
//
// The queue is bounded: past maxQueue spans waiting, new spans are dropped
// and counted, and the first drop is logged.
type batcher struct {
	exp      spanExporter
	maxQueue int
	maxBatch int
	timeout  time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	queue   []finished
	stopped bool

	kick    chan struct{}      // a batch is full (buffered 1)
	flushes chan chan struct{} // ForceFlush: closed once what was queued before was exported
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	dropped atomic.Int64
	warned  atomic.Bool
}

// exportTimeout bounds one export call, as the SDK's default does.
const exportTimeout = 30 * time.Second

func newBatcher(exp spanExporter, timeout time.Duration, maxBatch, maxQueue int, log *slog.Logger) *batcher {
	b := &batcher{
		exp: exp, maxQueue: maxQueue, maxBatch: min(maxBatch, maxQueue), timeout: timeout, log: log,
		kick: make(chan struct{}, 1), flushes: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	go b.run()
	return b
}

var _ sdktrace.SpanProcessor = (*batcher)(nil)

// OnStart implements sdktrace.SpanProcessor; it does nothing.
func (b *batcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s if it is sampled, dropping it if the queue is full or the
// processor shut down.
func (b *batcher) OnEnd(s sdktrace.ReadOnlySpan) { b.add(s) }

// add is OnEnd for any finished span.
func (b *batcher) add(s finished) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	if len(b.queue) >= b.maxQueue {
		b.mu.Unlock()
		b.drop()
		return
	}
	b.queue = append(b.queue, s)
	full := len(b.queue) == b.maxBatch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

func (b *batcher) drop() {
	n := b.dropped.Add(1)
	if b.warned.CompareAndSwap(false, true) {
		b.log.Warn("tracing: span queue full; spans are dropped until the exporter catches up (reported once)",
			"queue", b.maxQueue, "dropped", n)
	}
}

func (b *batcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.timeout)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.export()
			return
		case <-t.C:
			b.export()
		case <-b.kick:
			b.export()
		case ack := <-b.flushes:
			b.export()
			close(ack)
		}
	}
}

// export hands everything queued to the exporter, a batch at a time.
func (b *batcher) export() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), b.maxBatch)
		if n == 0 {
			b.mu.Unlock()
			return
		}
		batch := make([]finished, n)
		copy(batch, b.queue)
		rest := copy(b.queue, b.queue[n:])
		clear(b.queue[rest:])
		b.queue = b.queue[:rest]
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
		if err := b.exp.exportSpans(ctx, batch); err != nil {
			b.log.Warn("tracing: exporting spans failed; they are dropped", "spans", n, "err", err)
		}
		cancel()
	}
}

// ForceFlush exports the spans queued before it was called, returning when
// they were handed to the exporter or when ctx ends.
func (b *batcher) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case b.flushes <- ack:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, stops the processor and shuts its
// exporter down. Spans that end afterwards are ignored. It may be called
// more than once.
func (b *batcher) Shutdown(ctx context.Context) error {
	var err error
	b.once.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		close(b.stop)
		select {
		case <-b.done:
		case <-ctx.Done():
			err = ctx.Err()
			return
		}
		err = b.exp.Shutdown(ctx)
	})
	return err
}
