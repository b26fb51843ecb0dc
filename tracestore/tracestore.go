// Package tracestore is the collector that makes tracing work with nothing
// to install: a small Switchboard service, "traces", that listens for the
// span batches every traced process sends on tracing.Subject, keeps the
// recent traces in bounded memory (a Store), and answers get_trace (one
// trace by id) and recent (the latest traces through an endpoint).
// `switchboard dev` runs it; `switchboard trace` reads from it.
//
// It is a platform service built on the SDK, above package tracing. Every
// instance receives every span (the listener has no queue group), so
// several instances each hold the whole picture and any of them can answer.
// Spans are fire-and-forget: a trace finished while no collector listened
// is not there, and one evicted to stay within Limits is gone.
package tracestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/tracing"
)

// ServiceName is the collector's service name.
const ServiceName = "traces"

// Version is the collector's version.
const Version = "1.0.0"

// MaxWait bounds how long get_trace and recent wait for spans to arrive.
const MaxWait = 30 * time.Second

// GetTraceRequest asks for one trace.
type GetTraceRequest struct {
	// TraceID is the W3C trace id: 32 lowercase hex digits.
	TraceID string `json:"trace_id" jsonschema:"description=W3C trace id: 32 lowercase hex digits"`
	// WaitMS, if positive, waits up to that long (at most MaxWait) for the
	// trace to arrive before answering NotFound.
	WaitMS int64 `json:"wait_ms,omitempty" jsonschema:"description=wait up to this long for the trace to arrive"`
	// SettleMS, if positive, then waits (within WaitMS) until no span of
	// the trace arrived for that long, so that spans still on their way
	// from other processes are included.
	SettleMS int64 `json:"settle_ms,omitempty" jsonschema:"description=then wait until no span arrived for this long"`
}

// RecentRequest asks for the latest traces through an endpoint.
type RecentRequest struct {
	// Endpoint is "service.endpoint" (a call served there) or
	// "service.topic" (an event consumed there); empty means any trace.
	Endpoint string `json:"endpoint,omitempty" jsonschema:"description=service.endpoint or service.topic; empty for any"`
	// Limit is how many to return (default 20, at most 1000).
	Limit int `json:"limit,omitempty"`
	// WaitMS, if positive, waits up to that long for at least one match.
	WaitMS int64 `json:"wait_ms,omitempty"`
}

// RecentReply lists traces, the latest first.
type RecentReply struct {
	Traces []Summary `json:"traces"`
	// Stats say how much the answering collector holds.
	Stats Stats `json:"stats"`
}

// The collector's contract, for clients such as `switchboard trace`.
var (
	// GetTrace returns a trace by id: NotFound if the collector has none
	// (never sampled, not yet arrived, or evicted), InvalidArgument for a
	// malformed id.
	GetTrace = switchboard.Endpoint[*GetTraceRequest, *Trace](ServiceName, "get_trace")
	// GetRecent lists the latest traces through an endpoint.
	GetRecent = switchboard.Endpoint[*RecentRequest, *RecentReply](ServiceName, "recent")
)

// Collector is the traces service: a Store fed from the bus, served by
// get_trace and recent.
type Collector struct {
	store *Store
	svc   *switchboard.Service
	log   *slog.Logger
	sub   *bus.Subscription

	// Malformed input from the bus, counted rather than trusted.
	badBatches, badSpans atomic.Int64
}

// Option configures a Collector.
type Option func(*collectorConfig)

type collectorConfig struct {
	limits Limits
	logger *slog.Logger
	opts   []switchboard.ServiceOption
}

// WithLimits bounds the collector's memory (see Limits).
func WithLimits(l Limits) Option { return func(c *collectorConfig) { c.limits = l } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *collectorConfig) { c.logger = l } }

// WithServiceOptions passes options to the collector's service.
func WithServiceOptions(opts ...switchboard.ServiceOption) Option {
	return func(c *collectorConfig) { c.opts = append(c.opts, opts...) }
}

// New returns a collector, not yet started.
func New(opts ...Option) *Collector {
	var cfg collectorConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.logger == nil {
		cfg.logger = slog.Default()
	}
	c := &Collector{store: NewStore(cfg.limits), log: cfg.logger}
	c.svc = switchboard.NewService(ServiceName, Version, append([]switchboard.ServiceOption{
		switchboard.WithDescription("Recent traces, collected from " + tracing.Subject),
		switchboard.WithLogger(cfg.logger),
		switchboard.WithStatus("traces", func() any {
			return map[string]any{"store": c.store.Stats(), "limits": c.store.Limits(),
				"malformed_batches": c.badBatches.Load(), "malformed_spans": c.badSpans.Load()}
		}),
	}, cfg.opts...)...)
	GetTrace.Handle(c.svc, c.getTrace, switchboard.Describe("A trace by id, or NotFound; wait_ms waits for it to arrive"))
	GetRecent.Handle(c.svc, c.recent, switchboard.Describe("The latest traces through service.endpoint (or service.topic)"))
	return c
}

// Store returns the collector's store.
func (c *Collector) Store() *Store { return c.store }

// Service returns the collector's service.
func (c *Collector) Service() *switchboard.Service { return c.svc }

// Start listens for spans on conn and starts the service. conn stays owned
// by the caller.
func (c *Collector) Start(ctx context.Context, conn *bus.Conn) error {
	sub, err := conn.Listen(ctx, tracing.Subject, c.receive)
	if err != nil {
		return fmt.Errorf("tracestore: listen on %s: %w", tracing.Subject, err)
	}
	c.sub = sub
	if err := c.svc.Start(ctx, conn); err != nil {
		return errors.Join(err, sub.Stop(context.Background()))
	}
	return nil
}

// Shutdown stops the service and the listener.
func (c *Collector) Shutdown(ctx context.Context) error {
	err := c.svc.Shutdown(ctx)
	if c.sub != nil {
		err = errors.Join(err, c.sub.Stop(ctx))
	}
	return err
}

// receive stores one batch. Bad input from the bus is counted and logged
// at debug level, never fatal.
func (c *Collector) receive(m *bus.Message) {
	spans, dropped, err := tracing.DecodeBatch(m.Body)
	if err != nil {
		c.badBatches.Add(1)
		c.log.Debug("tracestore: ignoring a malformed span batch", "err", err)
		return
	}
	c.badSpans.Add(int64(dropped))
	c.store.Add(spans...)
}

func waitCtx(ctx context.Context, ms int64) (context.Context, context.CancelFunc) {
	d := min(time.Duration(ms)*time.Millisecond, MaxWait)
	if dl, ok := ctx.Deadline(); ok {
		// Answer before the caller gives up.
		d = min(d, time.Until(dl)-50*time.Millisecond)
	}
	return context.WithTimeout(ctx, max(d, 0))
}

func (c *Collector) getTrace(ctx context.Context, req *GetTraceRequest) (*Trace, error) {
	if !tracing.ValidTraceID(req.TraceID) {
		return nil, switchboard.Errorf(switchboard.InvalidArgument, "tracestore: malformed trace id %q: want 32 lowercase hex digits, not all zero", req.TraceID).
			WithDetail("field", "trace_id")
	}
	var t *Trace
	found := func() (ok bool) { t, ok = c.store.Get(req.TraceID); return ok }
	if req.WaitMS > 0 {
		wctx, cancel := waitCtx(ctx, req.WaitMS)
		defer cancel()
		if c.store.Wait(wctx, found) && req.SettleMS > 0 {
			c.store.WaitQuiet(wctx, req.TraceID, time.Duration(req.SettleMS)*time.Millisecond)
			found()
		}
	} else {
		found()
	}
	if t == nil {
		lim := c.store.Limits()
		return nil, switchboard.Errorf(switchboard.NotFound, "no trace %s here: it was not sampled, its spans have not arrived, or it is older than the last %d traces kept", req.TraceID, lim.MaxTraces).
			WithDetail("trace_id", req.TraceID)
	}
	return t, nil
}

func (c *Collector) recent(ctx context.Context, req *RecentRequest) (*RecentReply, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = 20
	}
	if limit > 1000 {
		return nil, switchboard.Errorf(switchboard.InvalidArgument, "tracestore: limit %d: at most 1000", req.Limit).WithDetail("field", "limit")
	}
	var out []Summary
	found := func() bool { out = c.store.Recent(req.Endpoint, limit); return len(out) > 0 }
	if req.WaitMS > 0 {
		wctx, cancel := waitCtx(ctx, req.WaitMS)
		defer cancel()
		c.store.Wait(wctx, found)
	} else {
		found()
	}
	return &RecentReply{Traces: out, Stats: c.store.Stats()}, nil
}
