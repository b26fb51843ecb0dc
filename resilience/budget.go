package resilience

import (
	"sync"
	"time"
)

// Budget bounds retries to a share of calls, as Finagle's RetryBudget and
// gRPC's retry throttling do: over any Window, the retries it allows are at
// most Ratio × the calls made plus MinPerSecond × Window. When a downstream
// fails completely, retries then add at most Ratio to its load instead of
// multiplying it by the number of attempts.
//
// The zero value is ready to use with the defaults. A Budget is safe for
// concurrent use; share one among the Retry middlewares whose calls should
// count together.
type Budget struct {
	// Ratio is the share of calls that may be retried (default 0.1).
	Ratio float64
	// MinPerSecond lets a client with little traffic retry anyway (default
	// 1; negative for none).
	MinPerSecond float64
	// Window is how long a call or retry counts (default 10s).
	Window time.Duration

	mu    sync.Mutex
	init  bool
	ratio float64
	min   float64 // reserve: MinPerSecond × Window
	slot  time.Duration
	slots [budgetSlots]budgetSlot
}

const budgetSlots = 10

type budgetSlot struct {
	epoch          int64
	calls, retries int64
}

// BudgetStats is a snapshot of a Budget over its window.
type BudgetStats struct {
	// Calls and Retries counted in the window.
	Calls   int64 `json:"calls"`
	Retries int64 `json:"retries"`
	// Available is how many retries the budget would allow now.
	Available float64 `json:"available"`
	// Ratio is the budget's ratio in effect.
	Ratio float64 `json:"ratio"`
}

func (b *Budget) setup() {
	if b.init {
		return
	}
	b.init = true
	b.ratio = b.Ratio
	if b.ratio <= 0 {
		b.ratio = 0.1
	}
	w := b.Window
	if w <= 0 {
		w = 10 * time.Second
	}
	b.slot = max(w/budgetSlots, time.Millisecond)
	perSec := b.MinPerSecond
	switch {
	case perSec == 0:
		perSec = 1
	case perSec < 0:
		perSec = 0
	}
	b.min = perSec * w.Seconds()
}

// current returns the slot for now, cleared if it belonged to an older
// round of the ring.
func (b *Budget) current(now time.Time) *budgetSlot {
	epoch := now.UnixNano() / int64(b.slot)
	s := &b.slots[epoch%budgetSlots]
	if s.epoch != epoch {
		*s = budgetSlot{epoch: epoch}
	}
	return s
}

// sums returns calls and retries over the window ending now.
func (b *Budget) sums(now time.Time) (calls, retries int64) {
	epoch := now.UnixNano() / int64(b.slot)
	for i := range b.slots {
		if s := &b.slots[i]; s.epoch > epoch-budgetSlots {
			calls += s.calls
			retries += s.retries
		}
	}
	return calls, retries
}

func (b *Budget) available(now time.Time) float64 {
	calls, retries := b.sums(now)
	return b.min + b.ratio*float64(calls) - float64(retries)
}

// call counts one call (its first attempt).
func (b *Budget) call() {
	now := time.Now()
	b.mu.Lock()
	b.setup()
	b.current(now).calls++
	b.mu.Unlock()
}

// retry takes one retry from the budget; false means it is exhausted.
func (b *Budget) retry() bool {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setup()
	if b.available(now) < 1 {
		return false
	}
	b.current(now).retries++
	return true
}

// Stats returns the budget's counts over its window.
func (b *Budget) Stats() BudgetStats {
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.setup()
	calls, retries := b.sums(now)
	return BudgetStats{Calls: calls, Retries: retries, Available: max(b.available(now), 0), Ratio: b.ratio}
}
