package tracestore_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchboard-dev/switchboard/tracestore"
	"github.com/switchboard-dev/switchboard/tracing"
)

func span(trace, id, parent int, name string) tracing.Span {
	return tracing.Span{TraceID: fmt.Sprintf("%032x", trace), SpanID: fmt.Sprintf("%016x", id), Name: name,
		Kind: "server", Service: "svc", StartNS: int64(trace)*1000 + int64(id), DurationNS: 10,
		Attrs: map[string]string{"rpc.service": "svc", "rpc.method": name}}
}

func TestStoreStaysWithinItsBoundsUnderManyTraces(t *testing.T) {
	lim := tracestore.Limits{MaxTraces: 100, MaxSpansPerTrace: 20, MaxSpans: 1500}
	s := tracestore.NewStore(lim)
	const traces, perTrace = 10_000, 30
	for tr := 1; tr <= traces; tr++ {
		batch := make([]tracing.Span, perTrace)
		for i := range batch {
			batch[i] = span(tr, i+1, 0, "e")
		}
		s.Add(batch...)
		if st := s.Stats(); st.Traces > lim.MaxTraces || st.Spans > lim.MaxSpans {
			t.Fatalf("after %d traces the store holds %+v, over its limits %+v", tr, st, lim)
		}
	}
	st := s.Stats()
	t.Logf("after %d traces of %d spans: %+v", traces, perTrace, st)
	// 20 spans kept per trace and 1500 spans in all: 75 traces fit.
	if st.Traces != 75 || st.Spans != 1500 || st.Evicted != traces-75 {
		t.Errorf("stats = %+v, want 75 traces, 1500 spans, %d evicted", st, traces-75)
	}
	if _, ok := s.Get(fmt.Sprintf("%032x", 1)); ok {
		t.Error("the oldest trace is still there")
	}
	last, ok := s.Get(fmt.Sprintf("%032x", traces))
	if !ok || len(last.Spans) != lim.MaxSpansPerTrace || last.DroppedSpans != perTrace-lim.MaxSpansPerTrace {
		t.Fatalf("latest trace: %d spans, %d dropped, ok=%v; want %d and %d", len(last.Spans), last.DroppedSpans, ok, lim.MaxSpansPerTrace, perTrace-lim.MaxSpansPerTrace)
	}
}

func TestStoreKeepsTheTraceStillReceivingSpans(t *testing.T) {
	s := tracestore.NewStore(tracestore.Limits{MaxTraces: 2})
	s.Add(span(1, 1, 0, "e"))
	s.Add(span(2, 1, 0, "e"))
	s.Add(span(1, 2, 0, "e")) // trace 1 is the most recently updated now
	s.Add(span(3, 1, 0, "e"))
	if _, ok := s.Get(fmt.Sprintf("%032x", 2)); ok {
		t.Error("trace 2 was kept, but it was the least recently updated")
	}
	if tr, ok := s.Get(fmt.Sprintf("%032x", 1)); !ok || len(tr.Spans) != 2 {
		t.Errorf("trace 1 = %v, %v; want both spans", tr, ok)
	}
}

func TestRecentFindsTracesByEndpointLatestFirst(t *testing.T) {
	s := tracestore.NewStore(tracestore.Limits{})
	s.Add(span(1, 1, 0, "quote"), span(2, 1, 0, "match"), span(3, 1, 0, "quote"))
	got := s.Recent("svc.quote", 10)
	if len(got) != 2 || got[0].TraceID != fmt.Sprintf("%032x", 3) || got[1].TraceID != fmt.Sprintf("%032x", 1) {
		t.Fatalf("recent(svc.quote) = %+v, want traces 3 then 1", got)
	}
	if got[0].Root != "svc.quote" || got[0].Spans != 1 || len(got[0].Services) != 1 {
		t.Errorf("summary = %+v", got[0])
	}
	if got := s.Recent("svc.nosuch", 10); len(got) != 0 {
		t.Errorf("recent(svc.nosuch) = %+v, want none", got)
	}
	if got := s.Recent("", 2); len(got) != 2 {
		t.Errorf("recent() with limit 2 = %d traces", len(got))
	}
}

func TestWaitReturnsWhenTheTraceArrives(t *testing.T) {
	s := tracestore.NewStore(tracestore.Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := fmt.Sprintf("%032x", 7)
	go s.Add(span(7, 1, 0, "e"))
	if !s.Wait(ctx, func() bool { _, ok := s.Get(id); return ok }) {
		t.Fatal("Wait gave up before the trace arrived")
	}
	short, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	if s.Wait(short, func() bool { return false }) {
		t.Fatal("Wait reported a condition that never held")
	}
}

func TestWaitQuietWaitsUntilNoSpanArrivedForAWhile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := tracestore.NewStore(tracestore.Limits{})
		id := fmt.Sprintf("%032x", 9)
		s.Add(span(9, 1, 0, "e"))
		start := time.Now()
		go func() {
			time.Sleep(50 * time.Millisecond) // another process's batch arrives
			s.Add(span(9, 2, 1, "e"))
		}()
		s.WaitQuiet(context.Background(), id, 100*time.Millisecond)
		if took := time.Since(start); took != 150*time.Millisecond {
			t.Errorf("WaitQuiet returned after %s, want 150ms: 100ms after the last span", took)
		}
		// A trace the store does not hold: at once.
		start = time.Now()
		s.WaitQuiet(context.Background(), fmt.Sprintf("%032x", 10), time.Second)
		if took := time.Since(start); took != 0 {
			t.Errorf("WaitQuiet for an unknown trace took %s", took)
		}
	})
}
