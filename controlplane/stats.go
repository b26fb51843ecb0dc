package controlplane

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/switchboard-dev/switchboard/traffic"
	"github.com/switchboard-dev/switchboard/wire"
)

// maxCallersPerSlot bounds the callers one stats bucket counts by name, over
// all instances of a service; the rest count as traffic.OtherCaller.
const maxCallersPerSlot = 64

const numLatencyBuckets = traffic.NumBuckets

// stats turns the cumulative counters instances announce into rates and
// latencies per endpoint, over a fixed ring of time buckets: memory is
// maxSeries × buckets × a bounded slot, however long it runs.
type stats struct {
	width     time.Duration
	n         int
	maxSeries int

	mu     sync.Mutex
	series map[seriesKey]*series
	// evicted counts series forgotten to stay within maxSeries.
	evicted int64
}

type seriesKey struct{ service, endpoint string }

type series struct {
	first, updated time.Time
	slots          []slot // indexed by bucket index modulo len
}

type slot struct {
	idx                     int64 // the bucket this slot holds; other values are stale
	requests, errors, nanos int64
	latency                 [numLatencyBuckets]int64
	hasLatency              bool
	callers                 map[string]traffic.CallerCount
}

func newStats(width, history time.Duration, maxSeries int) *stats {
	return &stats{width: width, n: int(history/width) + 1, maxSeries: maxSeries, series: map[seriesKey]*series{}}
}

func (s *stats) index(t time.Time) int64 { return t.UnixNano() / int64(s.width) }

// observe adds what info counted since prev (the instance's previous
// announcement, if hadPrev) to the current bucket.
func (s *stats) observe(info, prev wire.InstanceInfo, hadPrev bool, now time.Time) {
	// A first announcement's counts happened at unknown times, unless the
	// instance has just started: then they are recent.
	if !hadPrev && now.Sub(info.Started) > 2*s.width {
		return
	}
	cur, old := trafficOf(info), trafficOf(prev)
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range info.Stats {
		p := prev.Stats[name]
		d := slot{requests: delta(st.Requests, p.Requests), errors: delta(st.Errors, p.Errors), nanos: delta(st.ProcessingTime, p.ProcessingTime)}
		if e, ok := cur.Endpoints[name]; ok {
			oe := old.Endpoints[name]
			d.hasLatency = true
			for i := 0; i < min(len(e.Latency), numLatencyBuckets); i++ {
				var o int64
				if i < len(oe.Latency) {
					o = oe.Latency[i]
				}
				d.latency[i] = delta(e.Latency[i], o)
			}
			for c, n := range e.Callers {
				on := oe.Callers[c]
				if dn := (traffic.CallerCount{Requests: delta(n.Requests, on.Requests), Errors: delta(n.Errors, on.Errors)}); dn.Requests > 0 {
					if d.callers == nil {
						d.callers = map[string]traffic.CallerCount{}
					}
					d.callers[c] = dn
				}
			}
		}
		if d.requests == 0 && !hadPrev && d.callers == nil {
			s.touch(seriesKey{info.Service, name}, now) // known, idle
			continue
		}
		s.add(seriesKey{info.Service, name}, d, now)
	}
}

// delta is what a cumulative counter gained; a counter that went down was
// reset, so all of it is new.
func delta(cur, prev int64) int64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func trafficOf(info wire.InstanceInfo) traffic.Report {
	var r traffic.Report
	if raw, ok := info.Status[traffic.StatusName]; ok {
		_ = json.Unmarshal(raw, &r) // unreadable: no traffic figures from it
	}
	return r
}

// touch returns the series of k, making it (and evicting the least recently
// updated series beyond the bound) if needed. s.mu is held.
func (s *stats) touch(k seriesKey, now time.Time) *series {
	se := s.series[k]
	if se == nil {
		if len(s.series) >= s.maxSeries {
			var oldest seriesKey
			var at time.Time
			first := true
			for key, o := range s.series {
				if first || o.updated.Before(at) {
					oldest, at, first = key, o.updated, false
				}
			}
			delete(s.series, oldest)
			s.evicted++
		}
		se = &series{first: now, slots: make([]slot, s.n)}
		for i := range se.slots {
			se.slots[i].idx = -1
		}
		s.series[k] = se
	}
	se.updated = now
	return se
}

func (s *stats) add(k seriesKey, d slot, now time.Time) {
	se := s.touch(k, now)
	idx := s.index(now)
	sl := &se.slots[int(idx%int64(s.n))]
	if sl.idx != idx {
		*sl = slot{idx: idx}
	}
	sl.requests += d.requests
	sl.errors += d.errors
	sl.nanos += d.nanos
	if d.hasLatency {
		sl.hasLatency = true
		for i, c := range d.latency {
			sl.latency[i] += c
		}
	}
	for c, n := range d.callers {
		if _, ok := sl.callers[c]; !ok && len(sl.callers) >= maxCallersPerSlot {
			c = traffic.OtherCaller
		}
		if sl.callers == nil {
			sl.callers = map[string]traffic.CallerCount{}
		}
		o := sl.callers[c]
		sl.callers[c] = traffic.CallerCount{Requests: o.Requests + n.Requests, Errors: o.Errors + n.Errors}
	}
}

// Rates are requests (or errors) per second over the last 1, 5 and 15
// minutes (or since the control plane first saw the endpoint, if later).
type Rates struct {
	M1  float64 `json:"1m"`
	M5  float64 `json:"5m"`
	M15 float64 `json:"15m"`
}

// Latency summarizes handling times in milliseconds over the last minute.
// Mean comes from the instances' stats; P50 and P99 need the traffic report
// (package traffic) and are null without it. All are null without calls.
type Latency struct {
	Mean *float64 `json:"mean_ms"`
	P50  *float64 `json:"p50_ms"`
	P99  *float64 `json:"p99_ms"`
}

// Point is one bucket of an endpoint's history.
type Point struct {
	Time         time.Time `json:"t"`
	RequestsPerS float64   `json:"requests_per_s"`
	ErrorsPerS   float64   `json:"errors_per_s"`
	Latency
}

// CallerStats is the traffic from one caller to an endpoint over the last
// minute.
type CallerStats struct {
	Caller       string  `json:"caller"`
	Requests     int64   `json:"requests"`
	Errors       int64   `json:"errors"`
	RequestsPerS float64 `json:"requests_per_s"`
}

// EndpointStats are the figures of one endpoint, summed over the instances
// of its service.
type EndpointStats struct {
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	// Requests and Errors are counted over the last 15 minutes.
	Requests   int64         `json:"requests_15m"`
	Errors     int64         `json:"errors_15m"`
	Rate       Rates         `json:"request_rate"`
	ErrorRate  Rates         `json:"error_rate"`
	Latency    Latency       `json:"latency_1m"`
	Callers    []CallerStats `json:"callers"`
	Points     []Point       `json:"points"`
	LastUpdate time.Time     `json:"last_update"`
}

// query returns the stats of the endpoints of service ("" for all) and
// endpoint ("" for all), with up to points points of history each.
func (s *stats) query(service, endpoint string, points int, now time.Time) []EndpointStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.index(now)
	var out []EndpointStats
	for k, se := range s.series {
		if service != "" && k.service != service || endpoint != "" && k.endpoint != endpoint {
			continue
		}
		es := EndpointStats{Service: k.service, Endpoint: k.endpoint, LastUpdate: se.updated, Callers: []CallerStats{}, Points: []Point{}}
		rate := func(buckets int) (req, errs float64) {
			var r, e int64
			for i := cur - int64(buckets) + 1; i <= cur; i++ {
				if sl := s.at(se, i); sl != nil {
					r += sl.requests
					e += sl.errors
				}
			}
			from := time.Unix(0, (cur-int64(buckets)+1)*int64(s.width))
			if se.first.After(from) {
				from = se.first
			}
			span := max(now.Sub(from), s.width).Seconds()
			return float64(r) / span, float64(e) / span
		}
		per := int(time.Minute / s.width)
		es.Rate.M1, es.ErrorRate.M1 = rate(per)
		es.Rate.M5, es.ErrorRate.M5 = rate(5 * per)
		es.Rate.M15, es.ErrorRate.M15 = rate(15 * per)
		var minute slot
		callers := map[string]traffic.CallerCount{}
		for i := cur - int64(s.n) + 1; i <= cur; i++ {
			sl := s.at(se, i)
			if sl == nil {
				continue
			}
			es.Requests += sl.requests
			es.Errors += sl.errors
			if i > cur-int64(per) {
				merge(&minute, sl)
				for c, n := range sl.callers {
					o := callers[c]
					callers[c] = traffic.CallerCount{Requests: o.Requests + n.Requests, Errors: o.Errors + n.Errors}
				}
			}
		}
		es.Latency = minute.summary()
		span := min(now.Sub(se.first), time.Minute).Seconds()
		for c, n := range callers {
			es.Callers = append(es.Callers, CallerStats{Caller: c, Requests: n.Requests, Errors: n.Errors, RequestsPerS: float64(n.Requests) / max(span, s.width.Seconds())})
		}
		sort.Slice(es.Callers, func(i, j int) bool { return es.Callers[i].Caller < es.Callers[j].Caller })
		// Points: complete buckets only, oldest first; none before the
		// endpoint was first seen.
		firstIdx := s.index(se.first)
		for i := max(cur-int64(points), firstIdx); i < cur; i++ {
			p := Point{Time: time.Unix(0, i*int64(s.width)).UTC()}
			if sl := s.at(se, i); sl != nil {
				p.RequestsPerS = float64(sl.requests) / s.width.Seconds()
				p.ErrorsPerS = float64(sl.errors) / s.width.Seconds()
				p.Latency = sl.summary()
			}
			es.Points = append(es.Points, p)
		}
		out = append(out, es)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].Endpoint < out[j].Endpoint
	})
	return out
}

// at returns the slot of bucket i, or nil if it holds no data of it.
func (s *stats) at(se *series, i int64) *slot {
	if i < 0 {
		return nil
	}
	sl := &se.slots[int(i%int64(s.n))]
	if sl.idx != i {
		return nil
	}
	return sl
}

func merge(dst, src *slot) {
	dst.requests += src.requests
	dst.errors += src.errors
	dst.nanos += src.nanos
	if src.hasLatency {
		dst.hasLatency = true
		for i, c := range src.latency {
			dst.latency[i] += c
		}
	}
}

func (sl *slot) summary() Latency {
	var l Latency
	if sl.requests > 0 {
		l.Mean = ptr(float64(sl.nanos) / float64(sl.requests) / 1e6)
	}
	if sl.hasLatency {
		if v, ok := percentile(sl.latency[:], 0.50); ok {
			l.P50 = ptr(v)
		}
		if v, ok := percentile(sl.latency[:], 0.99); ok {
			l.P99 = ptr(v)
		}
	}
	return l
}

func ptr(v float64) *float64 { return &v }

// percentile estimates quantile q (0..1) of a traffic latency histogram in
// milliseconds, interpolating linearly within the bucket that holds it.
func percentile(h []int64, q float64) (float64, bool) {
	var total int64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	bounds := traffic.BucketBounds[:]
	var cum int64
	for i, c := range h {
		if c == 0 || float64(cum+c) < rank {
			cum += c
			continue
		}
		lo := 0.0
		if i > 0 {
			lo = bounds[min(i-1, len(bounds)-1)]
		}
		hi := lo * 2 // beyond the last bound: up to twice it, a guess
		if i < len(bounds) {
			hi = bounds[i]
		}
		return lo + (rank-float64(cum))/float64(c)*(hi-lo), true
	}
	return bounds[len(bounds)-1], true
}

// size returns how many series and slots the stats hold, for the bound test.
func (s *stats) size() (series, slots, callers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, se := range s.series {
		slots += len(se.slots)
		for _, sl := range se.slots {
			callers += len(sl.callers)
		}
	}
	return len(s.series), slots, callers
}
