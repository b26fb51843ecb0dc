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
	endpoints map[string]*endpointCounts // fixed at creation: no lock to read
	mu        sync.Mutex                 // guards topics
	topics    map[switchboard.TopicGroup]*topicCounts
}

type endpointCounts struct {
	buckets [numBuckets]atomic.Int64
	n       atomic.Int64
	refused atomic.Int64 // ResourceExhausted
}

type topicCounts struct{ retried, dead, dropped atomic.Int64 }

// window keeps the current and the previous generation, so checks look at
// between one and two intervals of history.
type window struct {
	cur, prev atomic.Pointer[generation]
	names     []string
}

func newWindow(endpoints []string) *window {
	w := &window{names: endpoints}
	w.cur.Store(w.newGeneration())
	w.prev.Store(w.newGeneration())
	return w
}

func (w *window) newGeneration() *generation {
	g := &generation{endpoints: make(map[string]*endpointCounts, len(w.names)), topics: map[switchboard.TopicGroup]*topicCounts{}}
	for _, n := range w.names {
		g.endpoints[n] = &endpointCounts{}
	}
	return g
}

// rotate starts a new generation; the current one becomes the previous.
func (w *window) rotate() {
	w.prev.Store(w.cur.Load())
	w.cur.Store(w.newGeneration())
}

func (w *window) observeRequest(r switchboard.RequestResult) {
	e := w.cur.Load().endpoints[r.Endpoint]
	if e == nil {
		return // an unknown endpoint
	}
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
		e := g.endpoints[name]
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
