package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// sample is what one side measured in one round.
type sample struct {
	lat     []time.Duration // sorted
	ops     int
	elapsed time.Duration
	mallocs uint64
	bytes   uint64
	cpu     time.Duration // process CPU time used
}

func (s *sample) percentile(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(s.lat)))) - 1
	return s.lat[min(max(i, 0), len(s.lat)-1)]
}

func (s *sample) mean() time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range s.lat {
		sum += d
	}
	return sum / time.Duration(len(s.lat))
}

func (s *sample) throughput() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.ops) / s.elapsed.Seconds()
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// measure records the heap allocations and process CPU time of f, after a
// GC so that both sides start from the same heap state.
func measure(s *sample, f func()) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	f()
	s.cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	s.mallocs, s.bytes = after.Mallocs-before.Mallocs, after.TotalAlloc-before.TotalAlloc
}

// callFunc performs operation i once.
type callFunc func(ctx context.Context, i int) error

// drive runs callers goroutines calling call until each made perCaller calls
// (if perCaller > 0) or d passed, and records every call's latency. If
// after is set, it runs once all calls returned and before the clock stops:
// events use it to wait until everything published was consumed.
func drive(ctx context.Context, callers, perCaller int, d time.Duration, call callFunc, after func(ops int) error) (sample, error) {
	lats := make([][]time.Duration, callers)
	for i := range lats {
		n := perCaller
		if n <= 0 {
			n = 1 << 14
		}
		lats[i] = make([]time.Duration, 0, n)
	}
	var s sample
	var mu sync.Mutex
	var firstErr error
	var start time.Time
	var afterErr error
	measure(&s, func() {
		var wg sync.WaitGroup
		start = time.Now()
		deadline := start.Add(d)
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t0 := time.Now()
				for j := 0; ; j++ {
					if perCaller > 0 && j >= perCaller || perCaller <= 0 && !t0.Before(deadline) || ctx.Err() != nil {
						return
					}
					if err := call(ctx, c*1_000_003+j); err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
						return
					}
					t1 := time.Now()
					lats[c] = append(lats[c], t1.Sub(t0))
					t0 = t1
				}
			}()
		}
		wg.Wait()
		if after != nil && firstErr == nil {
			n := 0
			for _, l := range lats {
				n += len(l)
			}
			afterErr = after(n)
		}
		s.elapsed = time.Since(start)
	})
	if firstErr != nil {
		return s, firstErr
	}
	if afterErr != nil {
		return s, afterErr
	}
	for _, l := range lats {
		s.lat = append(s.lat, l...)
	}
	s.ops = len(s.lat)
	slices.Sort(s.lat)
	return s, ctx.Err()
}

// side is one implementation of a case's work.
type side struct {
	name string // "switchboard" or "raw"
	run  func(ctx context.Context) (sample, error)
}

// alternate runs sb and raw for rounds alternating which goes first (AB,
// BA, AB, …), and returns the figures of each (medians over the rounds) and
// the ratios of those medians.
func alternate(ctx context.Context, rounds int, sb, raw side) (sbF, rawF Figures, p50Ratio, tputRatio float64, err error) {
	var sbS, rawS []sample
	for r := range rounds {
		order := []side{sb, raw}
		if r%2 == 1 {
			order = []side{raw, sb}
		}
		for _, sd := range order {
			s, err := sd.run(ctx)
			if err != nil {
				return sbF, rawF, 0, 0, fmt.Errorf("%s, round %d: %w", sd.name, r+1, err)
			}
			if sd.name == sb.name {
				sbS = append(sbS, s)
			} else {
				rawS = append(rawS, s)
			}
		}
	}
	sbF, rawF = figures(sbS), figures(rawS)
	return sbF, rawF, ratio(sbF.P50US, rawF.P50US), ratio(sbF.ThroughputPerS, rawF.ThroughputPerS), nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func figures(ss []sample) Figures {
	var f Figures
	pick := func(g func(*sample) float64) float64 {
		v := make([]float64, len(ss))
		for i := range ss {
			v[i] = g(&ss[i])
		}
		return median(v)
	}
	for i := range ss {
		f.Ops += ss[i].ops
	}
	f.P50US = pick(func(s *sample) float64 { return micros(s.percentile(50)) })
	f.P99US = pick(func(s *sample) float64 { return micros(s.percentile(99)) })
	f.MeanUS = pick(func(s *sample) float64 { return micros(s.mean()) })
	f.ThroughputPerS = pick((*sample).throughput)
	f.AllocsPerOp = pick(func(s *sample) float64 { return float64(s.mallocs) / float64(max(s.ops, 1)) })
	f.BytesPerOp = pick(func(s *sample) float64 { return float64(s.bytes) / float64(max(s.ops, 1)) })
	f.CPUUSPerOp = pick(func(s *sample) float64 { return micros(s.cpu) / float64(max(s.ops, 1)) })
	return f
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// headerBytes is the size of h as NATS writes it on the wire:
// "NATS/1.0\r\n", then "Key: Value\r\n" per value, then "\r\n".
func headerBytes(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// snoop captures one message on each subject while f runs.
func snoop(nc *nats.Conn, subjects []string, f func() error) ([]*nats.Msg, error) {
	chans := make([]chan *nats.Msg, len(subjects))
	for i, subj := range subjects {
		chans[i] = make(chan *nats.Msg, 1)
		ch := chans[i]
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			select {
			case ch <- m:
			default:
			}
		})
		if err != nil {
			return nil, err
		}
		defer sub.Unsubscribe() //nolint:errcheck // best effort
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	if err := f(); err != nil {
		return nil, err
	}
	out := make([]*nats.Msg, len(subjects))
	timeout := time.After(5 * time.Second)
	for i, ch := range chans {
		select {
		case out[i] = <-ch:
		case <-timeout:
			return nil, errors.New("bench: no copy of the message arrived to measure its headers on " + subjects[i])
		}
	}
	return out, nil
}
