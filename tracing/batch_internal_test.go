package tracing

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// recorder is a span exporter that keeps the batches it was given; with
// block set, each export first waits for a value on it.
type recorder struct {
	mu       sync.Mutex
	batches  []int
	spans    []string
	shutdown bool
	entered  chan struct{}
	block    chan struct{}
}

func (r *recorder) exportSpans(_ context.Context, ss []finished) error {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, len(ss))
	for _, s := range ss {
		r.spans = append(r.spans, s.Name())
	}
	return nil
}

func (r *recorder) Shutdown(context.Context) error {
	r.mu.Lock()
	r.shutdown = true
	r.mu.Unlock()
	return nil
}

func (r *recorder) exported() (spans []string, batches []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.spans...), append([]int(nil), r.batches...)
}

func span(name string, sampled bool) sdktrace.ReadOnlySpan {
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	return tracetest.SpanStub{Name: name, SpanContext: trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: newTraceID(), SpanID: newSpanID(), TraceFlags: flags,
	})}.Snapshot()
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestBatcherExportsSampledSpansWhenTheTimeoutTicks(t *testing.T) {
	r := &recorder{}
	b := newBatcher(r, 20*time.Millisecond, 512, 8192, quietLog())
	defer b.Shutdown(context.Background())
	b.OnEnd(span("a", true))
	b.OnEnd(span("unsampled", false))
	b.OnEnd(span("b", true))
	waitFor(t, "the export of two spans", func() bool { s, _ := r.exported(); return len(s) == 2 })
	if s, _ := r.exported(); s[0] != "a" || s[1] != "b" {
		t.Fatalf("exported %v, want [a b] in order and not the unsampled span", s)
	}
}

// A full batch is exported at once, not at the next tick (an hour away).
func TestBatcherExportsAFullBatchAtOnce(t *testing.T) {
	r := &recorder{}
	b := newBatcher(r, time.Hour, 4, 100, quietLog())
	defer b.Shutdown(context.Background())
	for i := range 9 {
		b.OnEnd(span(string(rune('a'+i)), true))
	}
	waitFor(t, "the export of two full batches", func() bool { s, _ := r.exported(); return len(s) >= 8 })
	_, batches := r.exported()
	for _, n := range batches {
		if n > 4 {
			t.Fatalf("batches %v: one is larger than the maximum of 4", batches)
		}
	}
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.exported(); len(s) != 9 {
		t.Fatalf("after ForceFlush %d spans exported, want all 9", len(s))
	}
}

// While the exporter is stuck the queue holds at most maxQueue spans; the
// rest are dropped, counted and reported once.
func TestBatcherBoundsItsQueue(t *testing.T) {
	var logs bytes.Buffer
	r := &recorder{entered: make(chan struct{}, 10), block: make(chan struct{})}
	b := newBatcher(r, time.Hour, 4, 8, slog.New(slog.NewTextHandler(&logs, nil)))
	for i := range 4 {
		b.OnEnd(span("first"+string(rune('0'+i)), true))
	}
	<-r.entered // the exporter holds the first batch and is stuck
	for range 8 + 5 {
		b.OnEnd(span("later", true))
	}
	if d := b.dropped.Load(); d != 5 {
		t.Fatalf("dropped %d, want the 5 spans past the queue's 8", d)
	}
	close(r.block)
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.exported(); len(s) != 12 {
		t.Fatalf("exported %d spans, want 4 + 8 queued", len(s))
	}
	if n := strings.Count(logs.String(), "span queue full"); n != 1 {
		t.Fatalf("logged the full queue %d times, want once:\n%s", n, logs.String())
	}
	_ = b.Shutdown(context.Background())
}

// Shutdown exports what is queued and shuts the exporter down; spans ended
// afterwards are ignored, and calling it again or flushing is harmless.
func TestBatcherShutdownExportsWhatIsQueued(t *testing.T) {
	r := &recorder{}
	b := newBatcher(r, time.Hour, 512, 8192, quietLog())
	b.OnEnd(span("queued", true))
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.OnEnd(span("late", true))
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := b.ForceFlush(context.Background()); err != nil {
		t.Fatalf("ForceFlush after Shutdown: %v", err)
	}
	s, _ := r.exported()
	r.mu.Lock()
	down := r.shutdown
	r.mu.Unlock()
	if len(s) != 1 || s[0] != "queued" || !down || b.dropped.Load() != 0 {
		t.Fatalf("exported %v, exporter shut down %v, dropped %d; want [queued], true, 0", s, down, b.dropped.Load())
	}
}

// ForceFlush gives up when its context ends while the exporter is stuck.
func TestBatcherForceFlushHonoursItsContext(t *testing.T) {
	r := &recorder{entered: make(chan struct{}, 10), block: make(chan struct{})}
	b := newBatcher(r, time.Hour, 512, 8192, quietLog())
	b.OnEnd(span("stuck", true))
	go func() { _ = b.ForceFlush(context.Background()) }()
	<-r.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.ForceFlush(ctx); err == nil {
		t.Fatal("ForceFlush returned nil while the exporter was stuck, want the context's error")
	}
	close(r.block)
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}
