package resilience

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
)

// PriorityCritical is the envelope priority (switchboard.WithPriority) that
// Shed admits first.
const PriorityCritical = "critical"

// Shed is server middleware that sheds load with an adaptive concurrency
// limit per endpoint, so that an overloaded service keeps serving the calls
// it admits at bounded latency and rejects the excess at once with
// ResourceExhausted, instead of queueing everything until every caller times
// out.
//
// The limit follows the gradient controller of Envoy's adaptive concurrency
// filter (itself after Netflix's concurrency-limits): every UpdateInterval
// it compares the latency of the calls that finished (their median) with the
// endpoint's latency without queueing (minRTT):
//
//	gradient = clamp(minRTT × (1 + Buffer) / latency, 0.5, 2)
//	limit    = gradient × limit + √limit
//
// so the limit grows while latency stays near minRTT and shrinks as soon as
// calls queue, settling where only a little queueing (√limit calls) is
// allowed. While calls in flight stay under half the limit the limit is not
// the bottleneck and is left alone. minRTT is learned from the latencies
// seen, and measured afresh when the limit binds and latency has risen (at
// most every RecalcInterval, or when the limit has sat at MinLimit for a
// second): the limit is then pinned to MinLimit until RecalcSamples calls
// have finished, and minRTT is their median.
//
// Calls whose envelope priority is "critical" (health checks, calls that
// must pass) may go beyond the limit by CriticalHeadroom × the limit (at
// least one call), so they are admitted while others are shed. Keep
// "critical" for the few calls that need it: they are the ones Shed does not
// hold back.
//
// A rejected call gets ResourceExhausted with details "shed":
// "concurrency", "limit", "in_flight", "retry_after" (the current median
// latency) and "unprocessed" (no handler ran: Retry may retry it). Stats shows each endpoint's limit and calls in flight.
//
// The zero value is a safe default. Configure it before the first call; a
// Shed is safe for concurrent use and must not be copied after.
type Shed struct {
	// MinLimit is the lowest limit, and the concurrency at which minRTT is
	// measured (default 3).
	MinLimit int
	// MaxLimit is the highest limit (default 1000).
	MaxLimit int
	// InitialLimit is the limit before any measurement (default 20).
	InitialLimit int
	// Buffer is the latency above minRTT, as a share of it, still taken as
	// no queueing (default 0.25).
	Buffer float64
	// UpdateInterval is how often the limit is recomputed (default 100ms).
	UpdateInterval time.Duration
	// RecalcInterval is the least time between measurements of minRTT
	// (default 30s, with 10% jitter).
	RecalcInterval time.Duration
	// RecalcSamples is how many calls a measurement of minRTT takes
	// (default 50; it also ends after a second with at least one call).
	RecalcSamples int
	// CriticalHeadroom is how far beyond the limit critical calls may go,
	// as a multiple of the limit (default 1: up to twice the limit; at least
	// one call).
	CriticalHeadroom float64
	// Observe, if set, receives every call Shed rejects.
	Observe func(Decision)

	once     sync.Once
	mu       sync.RWMutex
	limiters map[[2]string]*gradient // by service, endpoint
}

// ShedStatus is a snapshot of one endpoint's concurrency limit, for
// describe and metrics.
type ShedStatus struct {
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	// Limit is the current concurrency limit; InFlight the calls running.
	Limit    int `json:"limit"`
	InFlight int `json:"in_flight"`
	// MinRTT is the latency without queueing as last learned; Latency the
	// median latency over the last interval.
	MinRTT  time.Duration `json:"min_rtt_ns"`
	Latency time.Duration `json:"latency_ns"`
	// Measuring says minRTT is being measured (the limit is pinned to
	// MinLimit meanwhile).
	Measuring bool `json:"measuring,omitempty"`
	// Admitted and Rejected count calls since start.
	Admitted int64 `json:"admitted"`
	Rejected int64 `json:"rejected"`
}

func (s *Shed) setup() {
	s.once.Do(func() {
		if s.MinLimit <= 0 {
			s.MinLimit = 3
		}
		if s.MaxLimit <= 0 {
			s.MaxLimit = 1000
		}
		s.MaxLimit = max(s.MaxLimit, s.MinLimit)
		if s.InitialLimit <= 0 {
			s.InitialLimit = 20
		}
		s.InitialLimit = min(max(s.InitialLimit, s.MinLimit), s.MaxLimit)
		if s.Buffer <= 0 {
			s.Buffer = 0.25
		}
		if s.UpdateInterval <= 0 {
			s.UpdateInterval = 100 * time.Millisecond
		}
		if s.RecalcInterval <= 0 {
			s.RecalcInterval = 30 * time.Second
		}
		if s.RecalcSamples <= 0 {
			s.RecalcSamples = 50
		}
		if s.CriticalHeadroom <= 0 {
			s.CriticalHeadroom = 1
		}
		s.limiters = map[[2]string]*gradient{}
	})
}

// Middleware returns the server middleware.
func (s *Shed) Middleware() switchboard.Middleware {
	s.setup()
	return func(next switchboard.Handler) switchboard.Handler {
		return func(ctx context.Context, call *switchboard.Call) (any, error) {
			g := s.limiter(call.Service, call.Endpoint)
			start := time.Now()
			n, limit, ok := g.admit(call.Envelope.Priority == PriorityCritical)
			if !ok {
				return nil, s.reject(g, call, n, limit)
			}
			defer g.done(start, n)
			return next(ctx, call)
		}
	}
}

func (s *Shed) limiter(service, endpoint string) *gradient {
	key := [2]string{service, endpoint}
	s.mu.RLock()
	g := s.limiters[key]
	s.mu.RUnlock()
	if g != nil {
		return g
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.limiters[key]; g == nil {
		g = newGradient(s, service, endpoint, time.Now())
		s.limiters[key] = g
	}
	return g
}

func (s *Shed) reject(g *gradient, call *switchboard.Call, inflight, limit int64) error {
	wait := roundWait(time.Duration(g.lastRTT.Load()))
	why := ""
	if g.measuring.Load() {
		why = " while measuring its latency without queueing"
	}
	e := bus.Errorf(bus.ResourceExhausted, "resilience: %s.%s is overloaded: %d calls in flight, its adaptive concurrency limit is %d%s; retry in %v",
		call.Service, call.Endpoint, inflight, limit, why, wait).
		WithDetail(DetailShed, "concurrency").
		WithDetail(DetailLimit, itoa(limit)).
		WithDetail(DetailInFlight, itoa(inflight)).
		WithDetail(DetailRetryAfter, wait.String()).
		WithDetail(DetailUnprocessed, PerEndpoint(call))
	if s.Observe != nil {
		s.Observe(decision("shed", "reject", "concurrency", call, wait, e))
	}
	return e
}

// Stats returns each endpoint's limit, ordered by service and endpoint.
func (s *Shed) Stats() []ShedStatus {
	s.setup()
	s.mu.RLock()
	out := make([]ShedStatus, 0, len(s.limiters))
	for _, g := range s.limiters {
		out = append(out, g.status())
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b ShedStatus) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Endpoint, b.Endpoint))
	})
	return out
}

// gradient is one endpoint's adaptive limit. Admission is lock-free; the
// bookkeeping of finished calls takes a lock.
type gradient struct {
	cfg               *Shed
	service, endpoint string

	limit              atomic.Int64
	inflight           atomic.Int64
	admitted, rejected atomic.Int64
	lastRTT            atomic.Int64 // median latency of the last interval
	measuring          atomic.Bool

	mu          sync.Mutex
	limitF      float64
	minRTT      time.Duration // 0 until learned
	measured    bool          // minRTT comes from a measurement at MinLimit
	calcStart   time.Time
	calcSamples []time.Duration
	savedLimit  float64
	savedRTT    time.Duration // the latency that started the measurement
	lastCalc    time.Time
	calcEvery   time.Duration // RecalcInterval with jitter
	samples     []time.Duration
	seen        int
	maxInflight int64
	nextUpdate  time.Time
	atMin       int // consecutive updates with the limit at MinLimit
}

const maxSamples = 256

func newGradient(cfg *Shed, service, endpoint string, now time.Time) *gradient {
	g := &gradient{cfg: cfg, service: service, endpoint: endpoint, limitF: float64(cfg.InitialLimit),
		nextUpdate: now.Add(cfg.UpdateInterval), samples: make([]time.Duration, 0, maxSamples)}
	g.limit.Store(int64(cfg.InitialLimit))
	g.jitter()
	return g
}

func (g *gradient) jitter() {
	g.calcEvery = time.Duration(float64(g.cfg.RecalcInterval) * (0.9 + 0.2*rand.Float64()))
}

// admit takes a slot, returning the calls in flight with it and the limit
// applied; ok is false if the call is shed.
func (g *gradient) admit(critical bool) (n, limit int64, ok bool) {
	limit = g.limit.Load()
	if critical {
		limit += max(1, int64(math.Ceil(float64(limit)*g.cfg.CriticalHeadroom)))
	}
	n = g.inflight.Add(1)
	if n > limit {
		g.inflight.Add(-1)
		g.rejected.Add(1)
		return n - 1, limit, false
	}
	g.admitted.Add(1)
	return n, limit, true
}

// done records a finished call that started at start with n calls in flight.
func (g *gradient) done(start time.Time, n int64) {
	now := time.Now()
	rtt := now.Sub(start)
	g.inflight.Add(-1)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.measuring.Load() {
		// Only calls admitted under the pinned limit ran without queueing.
		if !start.Before(g.calcStart) {
			g.calcSamples = append(g.calcSamples, rtt)
		}
		if k := len(g.calcSamples); k >= g.cfg.RecalcSamples || k > 0 && now.Sub(g.calcStart) >= time.Second {
			g.endCalc(now)
		}
		return
	}
	// Reservoir sampling keeps the median honest at any rate.
	g.seen++
	if len(g.samples) < maxSamples {
		g.samples = append(g.samples, rtt)
	} else if i := rand.IntN(g.seen); i < maxSamples {
		g.samples[i] = rtt
	}
	g.maxInflight = max(g.maxInflight, n)
	if now.Before(g.nextUpdate) {
		return
	}
	g.update(now)
}

// update recomputes the limit from the interval's samples (g.mu held).
func (g *gradient) update(now time.Time) {
	rtt := median(g.samples)
	g.samples, g.seen = g.samples[:0], 0
	busiest := g.maxInflight
	g.maxInflight = g.inflight.Load()
	g.nextUpdate = now.Add(g.cfg.UpdateInterval)
	g.lastRTT.Store(int64(rtt))
	if rtt <= 0 {
		return
	}
	if g.minRTT == 0 || rtt < g.minRTT {
		g.minRTT = rtt
	}
	if float64(busiest)*2 < g.limitF {
		return // the limit is not what holds calls back
	}
	queueing := float64(rtt) > float64(g.minRTT)*(1+g.cfg.Buffer)
	stuck := g.atMin >= max(1, int(time.Second/g.cfg.UpdateInterval))
	if queueing && (!g.measured || now.Sub(g.lastCalc) >= g.calcEvery || stuck) {
		g.startCalc(now, rtt)
		return
	}
	grad := min(max(float64(g.minRTT)*(1+g.cfg.Buffer)/float64(rtt), 0.5), 2)
	g.setLimit(grad*g.limitF + math.Sqrt(g.limitF))
	if g.limitF <= float64(g.cfg.MinLimit) {
		g.atMin++
	} else {
		g.atMin = 0
	}
}

func (g *gradient) setLimit(l float64) {
	g.limitF = min(max(l, float64(g.cfg.MinLimit)), float64(g.cfg.MaxLimit))
	g.limit.Store(int64(math.Ceil(g.limitF)))
}

func (g *gradient) startCalc(now time.Time, rtt time.Duration) {
	g.measuring.Store(true)
	g.calcStart = now
	g.calcSamples = g.calcSamples[:0]
	g.savedLimit, g.savedRTT = g.limitF, rtt
	g.limit.Store(int64(g.cfg.MinLimit))
}

func (g *gradient) endCalc(now time.Time) {
	g.minRTT = median(g.calcSamples)
	g.measured = true
	g.lastCalc = now
	g.atMin = 0
	g.jitter()
	// One gradient step against the fresh minRTT, without the 0.5 floor
	// that guards against noisy samples: the measurement is not noise.
	grad := min(float64(g.minRTT)*(1+g.cfg.Buffer)/float64(g.savedRTT), 2)
	g.setLimit(grad*g.savedLimit + math.Sqrt(g.savedLimit))
	g.nextUpdate = now.Add(g.cfg.UpdateInterval)
	g.samples, g.seen, g.maxInflight = g.samples[:0], 0, g.inflight.Load()
	g.measuring.Store(false)
}

func (g *gradient) status() ShedStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return ShedStatus{Service: g.service, Endpoint: g.endpoint,
		Limit: int(g.limit.Load()), InFlight: int(g.inflight.Load()),
		MinRTT: g.minRTT, Latency: time.Duration(g.lastRTT.Load()), Measuring: g.measuring.Load(),
		Admitted: g.admitted.Load(), Rejected: g.rejected.Load()}
}

// median returns the median of ds (reordering ds), 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}
