package tracestore

import (
	"container/list"
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/tracing"
)

// Limits bound the memory a Store uses. The zero value of a field means its
// default.
type Limits struct {
	// MaxTraces is how many traces are kept (default 1000); when a new one
	// arrives the one updated least recently is forgotten.
	MaxTraces int `json:"max_traces"`
	// MaxSpansPerTrace bounds one trace (default 500); further spans of it
	// are counted in Trace.DroppedSpans and not kept.
	MaxSpansPerTrace int `json:"max_spans_per_trace"`
	// MaxSpans bounds all traces together (default 50000): old traces are
	// forgotten until the total fits.
	MaxSpans int `json:"max_spans"`
}

func (l Limits) withDefaults() Limits {
	if l.MaxTraces <= 0 {
		l.MaxTraces = 1000
	}
	if l.MaxSpansPerTrace <= 0 {
		l.MaxSpansPerTrace = 500
	}
	if l.MaxSpans <= 0 {
		l.MaxSpans = 50_000
	}
	// One trace alone must fit the total.
	l.MaxSpansPerTrace = min(l.MaxSpansPerTrace, l.MaxSpans)
	return l
}

// Store keeps the most recent traces in memory, within Limits, and finds
// them by id or by the endpoint they passed through. It is safe for
// concurrent use.
type Store struct {
	lim Limits

	mu      sync.Mutex
	traces  map[string]*list.Element // of *entry, most recently updated first
	lru     list.List
	spans   int           // kept, all traces
	changed chan struct{} // closed and replaced on every change
	evicted int64
}

type entry struct {
	id      string
	spans   []tracing.Span
	dropped int
	updated time.Time
	keys    map[string]int64 // Span.Endpoint() -> latest start_ns
}

// NewStore returns an empty store bounded by lim.
func NewStore(lim Limits) *Store {
	return &Store{lim: lim.withDefaults(), traces: map[string]*list.Element{}, changed: make(chan struct{})}
}

// Limits returns the store's bounds, defaults filled in.
func (s *Store) Limits() Limits { return s.lim }

// Add stores spans, each under its trace.
func (s *Store) Add(spans ...tracing.Span) {
	if len(spans) == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range spans {
		sp := &spans[i]
		el, ok := s.traces[sp.TraceID]
		if !ok {
			el = s.lru.PushFront(&entry{id: sp.TraceID, keys: map[string]int64{}})
			s.traces[sp.TraceID] = el
		} else {
			s.lru.MoveToFront(el)
		}
		e := el.Value.(*entry)
		e.updated = now
		if len(e.spans) >= s.lim.MaxSpansPerTrace {
			e.dropped++
			continue
		}
		e.spans = append(e.spans, *sp)
		s.spans++
		if k := sp.Endpoint(); k != "" && sp.StartNS > e.keys[k] {
			e.keys[k] = sp.StartNS
		}
	}
	// Forget the least recently updated traces beyond the bounds, but never
	// the one just updated.
	for s.lru.Len() > 1 && (s.lru.Len() > s.lim.MaxTraces || s.spans > s.lim.MaxSpans) {
		e := s.lru.Remove(s.lru.Back()).(*entry)
		delete(s.traces, e.id)
		s.spans -= len(e.spans)
		s.evicted++
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Trace is one stored trace.
type Trace struct {
	// TraceID is the W3C trace id, 32 lowercase hex digits.
	TraceID string `json:"trace_id"`
	// Spans are sorted by start time.
	Spans []tracing.Span `json:"spans"`
	// DroppedSpans counts spans not kept because the trace reached
	// Limits.MaxSpansPerTrace.
	DroppedSpans int `json:"dropped_spans,omitempty"`
	// Updated is when the store last received a span of the trace.
	Updated time.Time `json:"updated"`
}

// Get returns a copy of the trace with id.
func (s *Store) Get(id string) (*Trace, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.traces[id]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	t := &Trace{TraceID: e.id, Spans: slices.Clone(e.spans), DroppedSpans: e.dropped, Updated: e.updated}
	sort.SliceStable(t.Spans, func(i, j int) bool { return t.Spans[i].StartNS < t.Spans[j].StartNS })
	return t, true
}

// Summary describes a trace in a list.
type Summary struct {
	TraceID string `json:"trace_id"`
	// Root names the earliest span: "service.endpoint" for a server span,
	// "service.topic" for a consumer span, "caller → service.endpoint" for
	// a client span, "service → send topic" for a producer span.
	Root string `json:"root"`
	// Start is when the trace's first span started; Duration runs to the
	// end of its last span.
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Spans    int           `json:"spans"`
	Services []string      `json:"services"`
	// Errors counts spans that failed.
	Errors int `json:"errors,omitempty"`
}

// Recent returns up to limit summaries of the traces that passed through
// endpoint ("service.endpoint" of a server span or "service.topic" of a
// consumer span; "" matches every trace), the latest first.
func (s *Store) Recent(endpoint string, limit int) []Summary {
	if limit <= 0 {
		limit = 20
	}
	type hit struct {
		e  *entry
		at int64
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var hits []hit
	for el := s.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		if endpoint == "" {
			hits = append(hits, hit{e, e.updated.UnixNano()})
		} else if at, ok := e.keys[endpoint]; ok {
			hits = append(hits, hit{e, at})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].at > hits[j].at })
	out := make([]Summary, 0, min(limit, len(hits)))
	for _, h := range hits[:min(limit, len(hits))] {
		out = append(out, summarize(h.e))
	}
	return out
}

func summarize(e *entry) Summary {
	sum := Summary{TraceID: e.id, Spans: len(e.spans)}
	var first *tracing.Span
	var end int64
	svcs := map[string]bool{}
	for i := range e.spans {
		sp := &e.spans[i]
		if first == nil || sp.StartNS < first.StartNS {
			first = sp
		}
		end = max(end, sp.StartNS+sp.DurationNS)
		if sp.Service != "" && !svcs[sp.Service] {
			svcs[sp.Service] = true
			sum.Services = append(sum.Services, sp.Service)
		}
		if sp.Failed() {
			sum.Errors++
		}
	}
	sort.Strings(sum.Services)
	if first != nil {
		sum.Root = rootLabel(first)
		sum.Start = time.Unix(0, first.StartNS).UTC()
		sum.Duration = time.Duration(end - first.StartNS)
	}
	return sum
}

// Stats are the store's counters.
type Stats struct {
	Traces  int   `json:"traces"`
	Spans   int   `json:"spans"`
	Evicted int64 `json:"evicted_traces"`
}

// Stats returns how much the store holds now and how many traces it has
// forgotten to stay within its limits.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Traces: s.lru.Len(), Spans: s.spans, Evicted: s.evicted}
}

// Wait blocks until cond, checked after every change to the store (and once
// at the start), returns true, or ctx ends. It reports whether cond held.
func (s *Store) Wait(ctx context.Context, cond func() bool) bool {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cond()
		}
	}
}

func rootLabel(s *tracing.Span) string {
	switch s.Kind {
	case "server", "consumer":
		if k := s.Endpoint(); k != "" {
			return k
		}
	case "client":
		return s.Service + " → " + strings.Replace(s.Name, "/", ".", 1)
	case "producer":
		return s.Service + " → " + s.Name
	}
	return s.Name
}

// WaitQuiet waits until the trace with id has received no span for quiet,
// or ctx ends: spans of one trace arrive in batches from every process it
// passed through, so a trace just found may still be growing. It returns at
// once for a trace the store does not hold.
func (s *Store) WaitQuiet(ctx context.Context, id string, quiet time.Duration) {
	for {
		s.mu.Lock()
		ch := s.changed
		el, ok := s.traces[id]
		var since time.Duration
		if ok {
			since = time.Since(el.Value.(*entry).updated)
		}
		s.mu.Unlock()
		if !ok || since >= quiet {
			return
		}
		t := time.NewTimer(quiet - since)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		t.Stop()
	}
}
