package dedupe_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/dedupetest"
)

func TestMemoryConformance(t *testing.T) {
	var mu sync.Mutex
	stores := map[time.Duration]*dedupe.Memory{}
	dedupetest.Run(t, dedupetest.Harness{Open: func(_ *testing.T, window time.Duration) dedupe.Store {
		mu.Lock()
		defer mu.Unlock()
		if stores[window] == nil {
			stores[window] = &dedupe.Memory{Window: window}
		}
		return stores[window]
	}})
}

func mustClaim(t *testing.T, s dedupe.Store, k string, lease time.Duration, want dedupe.Status) dedupe.Claim {
	t.Helper()
	c, err := s.Claim(context.Background(), k, lease)
	if err != nil || c.Status != want {
		t.Fatalf("claim %s: %v %v, want %v", k, c.Status, err, want)
	}
	return c
}

func TestMemoryIsBoundedByCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &dedupe.Memory{MaxEntries: 100, Window: time.Hour}
		ctx := context.Background()
		for i := range 1000 {
			c := mustClaim(t, m, fmt.Sprint("k", i), time.Minute, dedupe.Claimed)
			if err := m.Complete(ctx, c); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // completions in a known order
			if n := m.Len(); n > 100 {
				t.Fatalf("after %d completions the store holds %d keys, bound 100", i+1, n)
			}
		}
		if n := m.Len(); n != 100 {
			t.Fatalf("holds %d keys, want the bound, 100", n)
		}
		// The newest 100 are remembered, the older ones forgotten first.
		mustClaim(t, m, "k999", time.Minute, dedupe.Done)
		mustClaim(t, m, "k900", time.Minute, dedupe.Done)
		mustClaim(t, m, "k899", time.Minute, dedupe.Claimed)
	})
}

func TestMemoryForgetsAfterTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &dedupe.Memory{Window: 10 * time.Minute}
		ctx := context.Background()
		c := mustClaim(t, m, "a", time.Minute, dedupe.Claimed)
		_ = m.Complete(ctx, c)
		time.Sleep(5 * time.Minute)
		c = mustClaim(t, m, "b", time.Minute, dedupe.Claimed)
		_ = m.Complete(ctx, c)
		time.Sleep(5*time.Minute - time.Nanosecond)
		if d := mustClaim(t, m, "a", time.Minute, dedupe.Done); d.TTL != time.Nanosecond {
			t.Fatalf("ttl %v at the end of the window", d.TTL)
		}
		time.Sleep(time.Nanosecond)
		mustClaim(t, m, "b", time.Minute, dedupe.Done)
		if n := m.Len(); n != 1 {
			t.Fatalf("%d keys after a's window, want 1 (b)", n)
		}
		mustClaim(t, m, "a", time.Minute, dedupe.Claimed)
	})
}

func TestMemoryLeaseExpiresExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &dedupe.Memory{}
		ctx := context.Background()
		old := mustClaim(t, m, "k", 30*time.Second, dedupe.Claimed)
		time.Sleep(20 * time.Second)
		if err := m.Extend(ctx, old, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30*time.Second - time.Nanosecond)
		if b := mustClaim(t, m, "k", time.Minute, dedupe.Busy); b.TTL != time.Nanosecond {
			t.Fatalf("busy ttl %v", b.TTL)
		}
		time.Sleep(time.Nanosecond)
		mustClaim(t, m, "k", time.Minute, dedupe.Claimed)
		if err := m.Extend(ctx, old, time.Minute); err != dedupe.ErrLeaseLost {
			t.Fatalf("stale extend: %v", err)
		}
		// A lease that expired is lost even if nobody took it over.
		lapsed := mustClaim(t, m, "k2", time.Second, dedupe.Claimed)
		time.Sleep(time.Second)
		if err := m.Extend(ctx, lapsed, time.Minute); err != dedupe.ErrLeaseLost {
			t.Fatalf("extend of a lapsed lease: %v", err)
		}
	})
}

// A handler longer than many leases keeps its claim, because the middleware
// renews it; once the handler's process stops renewing, the lease ends.
func TestMiddlewareRenewsTheLeaseOfALongHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := &dedupe.Memory{}
		ev := dedupetest.Event("g", "t.long", "ev-1")
		k := dedupe.Key(ev.Info)
		done := make(chan error)
		mw := dedupe.Middleware(m, dedupe.WithLease(30*time.Second))
		go func() {
			done <- mw(func(ctx context.Context, _ *switchboard.EventCall) error {
				time.Sleep(10 * time.Minute) // a long handler
				return nil
			})(context.Background(), ev)
		}()
		for range 19 {
			time.Sleep(30 * time.Second)
			mustClaim(t, m, k, time.Minute, dedupe.Busy)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		mustClaim(t, m, k, time.Minute, dedupe.Done)
	})
}
