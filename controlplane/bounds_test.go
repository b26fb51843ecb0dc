package controlplane

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/traffic"
	"github.com/switchboard-dev/switchboard/wire"
)

// announcement makes an InstanceInfo with cumulative counters n for each
// endpoint, and a traffic report naming callers.
func announcement(svc, id string, started time.Time, endpoints []string, n int64, callers []string) wire.InstanceInfo {
	info := wire.InstanceInfo{Service: svc, ID: id, Version: "1.0.0", Started: started, HeartbeatMS: 5000,
		Stats: map[string]wire.EndpointStats{}}
	rep := traffic.Report{Endpoints: map[string]traffic.EndpointReport{}}
	for _, e := range endpoints {
		info.Stats[e] = wire.EndpointStats{Requests: n, Errors: n / 10, ProcessingTime: n * int64(2*time.Millisecond)}
		er := traffic.EndpointReport{Callers: map[string]traffic.CallerCount{}, Latency: make([]int64, numLatencyBuckets)}
		for _, c := range callers {
			er.Callers[c] = traffic.CallerCount{Requests: n / int64(len(callers)), Errors: 0}
		}
		er.Latency[6] = n // 1-2 ms
		rep.Endpoints[e] = er
	}
	b, _ := json.Marshal(rep)
	info.Status = map[string]json.RawMessage{traffic.StatusName: b}
	return info
}

// TestStatsMemoryIsBounded runs the stats through an hour of
// announcements from many more endpoints and callers than they keep, and
// checks that what they hold never exceeds the bound.
func TestStatsMemoryIsBounded(t *testing.T) {
	const maxSeries = 16
	st := newStats(5*time.Second, 15*time.Minute, maxSeries)
	slotsPerSeries := st.n
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	prev := map[string]wire.InstanceInfo{}
	var callers []string
	for i := range 70 {
		callers = append(callers, fmt.Sprintf("caller-%d", i))
	}
	maxSeen := 0
	for step := range 3600 / 10 { // one announcement round every 10 s
		now := t0.Add(time.Duration(step) * 10 * time.Second)
		// 40 services of 3 endpoints: 120 series for 16 places; each
		// round 6 of them announce, with 70 callers each (more than a
		// bucket keeps by name).
		for k := range 6 {
			svc := fmt.Sprintf("svc-%d", (step*6+k)%40)
			id := svc + "-1"
			info := announcement(svc, id, t0, []string{"a", "b", "c"}, int64(step*100), callers)
			p, ok := prev[id]
			st.observe(info, p, ok, now)
			prev[id] = info
		}
		series, slots, callerKeys := st.size()
		maxSeen = max(maxSeen, series)
		if series > maxSeries || slots > maxSeries*slotsPerSeries || callerKeys > maxSeries*slotsPerSeries*(maxCallersPerSlot+1) {
			t.Fatalf("step %d: %d series, %d slots, %d caller entries: over the bound of %d series × %d slots × %d callers",
				step, series, slots, callerKeys, maxSeries, slotsPerSeries, maxCallersPerSlot+1)
		}
	}
	series, slots, callerKeys := st.size()
	t.Logf("after a simulated hour: %d series (bound %d), %d slots (bound %d), %d caller entries (bound %d), %d series evicted",
		series, maxSeries, slots, maxSeries*slotsPerSeries, callerKeys, maxSeries*slotsPerSeries*(maxCallersPerSlot+1), st.evicted)
	if maxSeen != maxSeries || st.evicted == 0 {
		t.Errorf("the bound was never reached (max %d series, %d evicted): the test proves nothing", maxSeen, st.evicted)
	}
}

// TestEventTailIsBounded keeps a long run of events on many topics, some
// with big bodies, within the tail's bounds.
func TestEventTailIsBounded(t *testing.T) {
	tail := newEventTail(5, 10, 1024)
	now := time.Now()
	big := make([]byte, 1<<20)
	for i := range 100_000 {
		body := []byte(`{"n":1}`)
		if i%1000 == 0 {
			body = big
		}
		topic := fmt.Sprintf("hot.t%d", i%5) // five busy topics, and many that are seen once
		if i%10 == 0 {
			topic = fmt.Sprintf("cold.t%d", i)
		}
		tail.add(&bus.Message{Subject: topic, Header: bus.Header{wire.HeaderContentType: wire.ContentTypeJSON}, Body: body}, now.Add(time.Duration(i)))
		if topics, events := tail.size(); topics > 10 || events > 50 {
			t.Fatalf("after %d events: %d topics, %d events kept: over 10 topics × 5", i+1, topics, events)
		}
	}
	bytes := 0
	for _, tt := range tail.topics {
		for _, ev := range tt.ring {
			bytes += len(ev.body)
		}
	}
	if bytes > 50*1024 {
		t.Errorf("bodies hold %d bytes: over 50 events × 1 KiB", bytes)
	}
	evs := tail.recent("", 0, 1000)
	if len(evs) < 25 || len(evs) > 50 || evs[0].seq != 100_000 {
		t.Errorf("recent: %d events, newest seq %d", len(evs), evs[0].seq)
	}
	one := newEventTail(5, 10, 1024)
	one.add(&bus.Message{Subject: "big", Body: big}, now)
	if ev := one.recent("big", 0, 1)[0]; len(ev.body) != 1024 || !ev.truncated || ev.size != len(big) {
		t.Errorf("a 1 MiB body is kept as %d bytes (truncated %v, size %d), want 1024", len(ev.body), ev.truncated, ev.size)
	}
	hdr := bus.Header{wire.HeaderCEID: "e1", "X-Big": string(big)}
	one.add(&bus.Message{Subject: "big", Header: hdr, Body: []byte("{}")}, now)
	if ev := one.recent("big", 0, 1)[0]; len(ev.header["X-Big"]) != 0 || ev.header[wire.HeaderCEID] != "e1" || !ev.truncated {
		t.Errorf("1 MiB of headers kept as %d bytes (id %q, truncated %v)", len(ev.header["X-Big"]), ev.header[wire.HeaderCEID], ev.truncated)
	}
	t.Logf("100000 events on 10005 topics: kept %d events on %d topics, %d body bytes; %d topics forgotten", len(evs), len(tail.topics), bytes, tail.evicted)
}

func TestInstancesAreBounded(t *testing.T) {
	s := newState(100)
	now := time.Now()
	for i := range 10_000 {
		s.announce(wire.InstanceInfo{Service: fmt.Sprintf("s%d", i), ID: fmt.Sprintf("i%d", i), HeartbeatMS: 1000}, now.Add(time.Duration(i)))
	}
	if len(s.instances) > 100 || len(s.gone) > 100 {
		t.Fatalf("%d instances, %d gone services kept: over 100", len(s.instances), len(s.gone))
	}
	s.prune(now.Add(time.Hour))
	if len(s.instances) != 0 {
		t.Errorf("%d instances silent for an hour still kept", len(s.instances))
	}
}

func TestRatesAndLatencyFromAnnouncements(t *testing.T) {
	st := newStats(time.Second, 15*time.Minute, 10)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var prev wire.InstanceInfo
	// 10 requests a second for two minutes, announced every second.
	for s := 0; s <= 120; s++ {
		info := announcement("svc", "i1", t0, []string{"e"}, int64(s*10), []string{"web"})
		st.observe(info, prev, s > 0, t0.Add(time.Duration(s)*time.Second))
		prev = info
	}
	now := t0.Add(120*time.Second + 500*time.Millisecond)
	es := st.query("svc", "e", 5, now)
	if len(es) != 1 {
		t.Fatalf("stats: %+v", es)
	}
	e := es[0]
	for name, got := range map[string]float64{"1m": e.Rate.M1, "5m": e.Rate.M5, "15m": e.Rate.M15} {
		if math.Abs(got-10) > 0.5 {
			t.Errorf("%s rate %.2f/s, want 10", name, got)
		}
	}
	if math.Abs(e.ErrorRate.M1-1) > 0.1 {
		t.Errorf("error rate %.2f/s, want 1", e.ErrorRate.M1)
	}
	if e.Latency.Mean == nil || math.Abs(*e.Latency.Mean-2) > 0.01 {
		t.Errorf("mean latency %v, want 2ms", e.Latency.Mean)
	}
	if e.Latency.P50 == nil || *e.Latency.P50 < 1 || *e.Latency.P50 > 2 || e.Latency.P99 == nil || *e.Latency.P99 > 2 {
		t.Errorf("p50 %v, p99 %v: want within the 1-2 ms bucket", e.Latency.P50, e.Latency.P99)
	}
	if len(e.Points) != 5 || e.Points[4].RequestsPerS != 10 {
		t.Errorf("points %+v", e.Points)
	}
	if len(e.Callers) != 1 || e.Callers[0].Caller != "web" || math.Abs(e.Callers[0].RequestsPerS-10) > 0.5 {
		t.Errorf("callers %+v", e.Callers)
	}
}

func TestPercentile(t *testing.T) {
	h := make([]int64, numLatencyBuckets)
	if _, ok := percentile(h, 0.5); ok {
		t.Error("percentile of nothing")
	}
	h[0] = 50  // <= 25 µs
	h[18] = 50 // > 10 s
	for _, c := range []struct {
		q, want float64
	}{{0.25, 0.0125}, {0.5, 0.025}, {0.99, 19800}} {
		if got, _ := percentile(h, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%.2f = %g, want %g", c.q, got, c.want)
		}
	}
}

func TestDeltaTreatsAFallingCounterAsAReset(t *testing.T) {
	if d := delta(5, 10); d != 5 {
		t.Errorf("delta(5, 10) = %d", d)
	}
	if d := delta(15, 10); d != 5 {
		t.Errorf("delta(15, 10) = %d", d)
	}
}
