package health

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// The latency histogram: microseconds in log2 steps of four sub-buckets
// each, so a percentile is known to within 25% of its value, with no
// allocation and only atomic adds on the request path.
const (
	subBits    = 2
	numBuckets = 64 << subBits
)

func bucketOf(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < 1<<subBits {
		return int(us)
	}
	l := bits.Len64(us) // 2^(l-1) <= us < 2^l
	sub := (us >> (l - 1 - subBits)) & (1<<subBits - 1)
	return min((l-subBits)<<subBits+int(sub), numBuckets-1)
}

// bucketUpper is the smallest duration above every value in bucket i.
func bucketUpper(i int) time.Duration {
	if i < 1<<subBits {
		return time.Duration(i+1) * time.Microsecond
	}
	l := i>>subBits + subBits // bits.Len64 of the bucket's values
	sub := uint64(i & (1<<subBits - 1))
	base := uint64(1) << (l - 1)
	return time.Duration(base+(sub+1)*(base>>subBits)) * time.Microsecond
}

// generation counts what happened during one check interval.
type generation struct {
	// endpoints is copied on write (a new endpoint, rare), so the request
	// path reads it without a lock.
	endpoints atomic.Pointer[map[string]*endpointCounts]
	mu        sync.Mutex // guards topics and writes to endpoints
	topics    map[switchboard.TopicGroup]*topicCounts
}

// endpoint returns the counts of name, made if create and missing.
func (g *generation) endpoint(name string, create bool) *endpointCounts {
	if e := (*g.endpoints.Load())[name]; e != nil || !create {
		return e
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.endpoints.Load()
	if e := old[name]; e != nil {
		return e
	}
	next := make(map[string]*endpointCounts, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	e := &endpointCounts{}
	next[name] = e
	g.endpoints.Store(&next)
	return e
}

type endpointCounts struct {
	buckets [numBuckets]atomic.Int64
	n       atomic.Int64
	refused atomic.Int64 // ResourceExhausted
}

type topicCounts struct{ retried, dead, dropped atomic.Int64 }

// window keeps the current and the previous generation, so checks look at
// between one and two intervals of history. Endpoints registered after the
// window was made are added on their first request.
type window struct {
	cur, prev atomic.Pointer[generation]
}

func newWindow(endpoints []string) *window {
	w := &window{}
	w.cur.Store(newGeneration(endpoints))
	w.prev.Store(newGeneration(endpoints))
	return w
}

func newGeneration(endpoints []string) *generation {
	g := &generation{topics: map[switchboard.TopicGroup]*topicCounts{}}
	m := make(map[string]*endpointCounts, len(endpoints))
	for _, n := range endpoints {
		m[n] = &endpointCounts{}
	}
	g.endpoints.Store(&m)
	return g
}

// rotate starts a new generation, with the endpoints seen so far; the
// current one becomes the previous.
func (w *window) rotate() {
	cur := w.cur.Load()
	var names []string
	for n := range *cur.endpoints.Load() {
		names = append(names, n)
	}
	w.prev.Store(cur)
	w.cur.Store(newGeneration(names))
}

func (w *window) observeRequest(r switchboard.RequestResult) {
	if r.Endpoint == switchboard.UnknownEndpoint {
		return
	}
	e := w.cur.Load().endpoint(r.Endpoint, true)
	e.buckets[bucketOf(r.Duration)].Add(1)
	e.n.Add(1)
	if r.Code == bus.ResourceExhausted {
		e.refused.Add(1)
	}
}

func (w *window) observeDelivery(s bus.Settled) {
	var field func(*topicCounts) *atomic.Int64
	switch s.Outcome {
	case bus.Retried:
		field = func(t *topicCounts) *atomic.Int64 { return &t.retried }
	case bus.DeadLettered:
		field = func(t *topicCounts) *atomic.Int64 { return &t.dead }
	case bus.Dropped:
		field = func(t *topicCounts) *atomic.Int64 { return &t.dropped }
	default:
		return // the common case costs nothing
	}
	g := w.cur.Load()
	k := switchboard.TopicGroup{Topic: s.Topic, Group: s.Group}
	g.mu.Lock()
	t := g.topics[k]
	if t == nil {
		t = &topicCounts{}
		g.topics[k] = t
	}
	g.mu.Unlock()
	field(t).Add(1)
}

// endpointStats sums both generations for one endpoint.
type endpointStats struct {
	n, refused int64
	buckets    [numBuckets]int64
}

func (w *window) endpoint(name string) endpointStats {
	var s endpointStats
	for _, g := range []*generation{w.prev.Load(), w.cur.Load()} {
		e := g.endpoint(name, false)
		if e == nil {
			continue
		}
		s.n += e.n.Load()
		s.refused += e.refused.Load()
		for i := range e.buckets {
			s.buckets[i] += e.buckets[i].Load()
		}
	}
	return s
}

// quantile returns an upper bound of the q-quantile of the latencies.
func (s *endpointStats) quantile(q float64) time.Duration {
	var total int64
	for _, c := range s.buckets {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := int64(q*float64(total) + 0.999999)
	var seen int64
	for i, c := range s.buckets {
		seen += c
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(numBuckets - 1)
}

type topicStats struct {
	switchboard.TopicGroup
	retried, dead, dropped int64
}

func (w *window) topics() []topicStats {
	sums := map[switchboard.TopicGroup]*topicStats{}
	var order []switchboard.TopicGroup
	for _, g := range []*generation{w.prev.Load(), w.cur.Load()} {
		g.mu.Lock()
		for k, t := range g.topics {
			s := sums[k]
			if s == nil {
				s = &topicStats{TopicGroup: k}
				sums[k] = s
				order = append(order, k)
			}
			s.retried += t.retried.Load()
			s.dead += t.dead.Load()
			s.dropped += t.dropped.Load()
		}
		g.mu.Unlock()
	}
	out := make([]topicStats, 0, len(order))
	for _, k := range order {
		out = append(out, *sums[k])
	}
	return out
}
