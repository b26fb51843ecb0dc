// Package dedupetest is the conformance suite for dedupe stores: every
// Store runs the same behaviours against its real backend, so the in-memory
// default and the shared stores behave alike.
package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/bus"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/wire"
)

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a store whose done keys are remembered for window. Every
	// store opened by one harness shares its state with the others, as
	// instances of a consumer group share a database: for a shared store
	// each call should be a new client. For Memory, return one store per
	// window.
	Open func(t *testing.T, window time.Duration) dedupe.Store
}

// Lease is the short lease the suite uses where it lets leases expire.
const Lease = 300 * time.Millisecond

// Run runs every behaviour as a subtest.
func Run(t *testing.T, h Harness) {
	t.Run("a claimed key is busy for others and done after completion", func(t *testing.T) { testClaimBusyDone(t, h) })
	t.Run("concurrent deliveries of one id from two instances run the handler once", func(t *testing.T) { testConcurrentOnce(t, h) })
	t.Run("a failed handler releases its claim so that the redelivery runs it", func(t *testing.T) { testFailureReleases(t, h) })
	t.Run("a panicking handler releases its claim", func(t *testing.T) { testPanicReleases(t, h) })
	t.Run("an expired lease can be claimed by another instance and the stale holder cannot touch it", func(t *testing.T) { testLeaseExpiry(t, h) })
	t.Run("a running handler renews its lease", func(t *testing.T) { testRenewal(t, h) })
	t.Run("a done key is forgotten after the window", func(t *testing.T) { testWindow(t, h) })
	t.Run("keys are independent and the default key separates groups and topics", func(t *testing.T) { testKeys(t, h) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// key returns a key no other test or run uses.
func key(t *testing.T) string {
	return fmt.Sprintf("%s/%016x", t.Name(), rand.Uint64())
}

// Event returns an event delivery as consumer middleware sees it.
func Event(group, topic, id string) *switchboard.EventCall {
	return &switchboard.EventCall{Topic: topic, Info: &switchboard.EventInfo{
		Event: wire.Event{ID: id, Source: "/switchboard/dedupetest", Type: topic},
		Group: group, Attempt: 1,
	}}
}

func claim(ctx context.Context, t *testing.T, s dedupe.Store, k string, lease time.Duration, want dedupe.Status) dedupe.Claim {
	t.Helper()
	c, err := s.Claim(ctx, k, lease)
	if err != nil {
		t.Fatalf("claim %s: %v", k, err)
	}
	if c.Status != want {
		t.Fatalf("claim %s: status %v, want %v", k, c.Status, want)
	}
	if c.Key != k {
		t.Fatalf("claim %s: returned key %q", k, c.Key)
	}
	return c
}

// eventually calls f until it returns true, failing after a generous bound.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 20s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testClaimBusyDone(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.Open(t, time.Hour), h.Open(t, time.Hour)
	k := key(t)
	c := claim(ctx, t, a, k, time.Minute, dedupe.Claimed)
	if c.Token == "" || c.TTL <= 0 || c.TTL > time.Minute {
		t.Fatalf("claimed: token %q ttl %v", c.Token, c.TTL)
	}
	busy := claim(ctx, t, b, k, time.Minute, dedupe.Busy)
	if busy.TTL <= 0 || busy.TTL > time.Minute {
		t.Fatalf("busy: ttl %v, want the holder's remaining lease", busy.TTL)
	}
	claim(ctx, t, a, k, time.Minute, dedupe.Busy) // the holder itself is not let in twice
	if err := a.Complete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := a.Complete(ctx, c); err != nil {
		t.Fatalf("a second Complete: %v, want nil (idempotent)", err)
	}
	d := claim(ctx, t, b, k, time.Minute, dedupe.Done)
	if d.TTL <= time.Minute || d.TTL > time.Hour {
		t.Fatalf("done: ttl %v, want the window's remainder", d.TTL)
	}
	if err := b.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	claim(ctx, t, b, k, time.Minute, dedupe.Done) // releasing a done key does nothing
	if err := a.Extend(ctx, c, time.Minute); !errors.Is(err, dedupe.ErrLeaseLost) {
		t.Fatalf("extend of a done key: %v, want ErrLeaseLost", err)
	}
}

func testConcurrentOnce(t *testing.T, h Harness) {
	ctx := ctxT(t)
	const perInstance = 8
	id := key(t)
	var mu sync.Mutex
	outcomes := map[dedupe.Outcome]int{}
	observe := dedupe.WithObserver(func(_ string, o dedupe.Outcome, _ error) {
		mu.Lock()
		outcomes[o]++
		mu.Unlock()
	})
	runs := 0
	refused := make(chan error, 2*perInstance)
	release := make(chan struct{})
	handler := func(ctx context.Context, _ *switchboard.EventCall) error {
		mu.Lock()
		runs++
		mu.Unlock()
		select { // hold the claim until every other delivery was refused
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var handlers []switchboard.EventHandler
	for range 2 {
		handlers = append(handlers, dedupe.Middleware(h.Open(t, time.Hour), observe, dedupe.WithLease(time.Minute))(handler))
	}
	results := make(chan error, 2*perInstance)
	start := make(chan struct{})
	for i := range 2 * perInstance {
		go func() {
			<-start
			err := handlers[i%2](ctx, Event("billing", "trip.ended", id))
			if err != nil {
				refused <- err
			}
			results <- err
		}()
	}
	close(start)
	for i := range 2*perInstance - 1 {
		select {
		case err := <-refused:
			if bus.ErrorCode(err) != bus.Aborted {
				t.Fatalf("delivery %d refused with %v, want Aborted (in flight elsewhere)", i, err)
			}
			if d, ok := bus.RetryAfter(err); !ok || d <= 0 {
				t.Fatalf("refusal %v has no retry_after", err)
			}
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("only %d of %d concurrent deliveries were refused; the handler ran %d times", i, 2*perInstance-1, runs)
		}
	}
	close(release)
	for range 2 * perInstance {
		<-results
	}
	// The redeliveries of the refused ones now find the key done.
	for i := range 2*perInstance - 1 {
		if err := handlers[i%2](ctx, Event("billing", "trip.ended", id)); err != nil {
			t.Fatalf("redelivery %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("ledger: deliveries=%d handler runs=%d refused in flight=%d duplicates dropped=%d",
		2*(2*perInstance)-1, runs, outcomes[dedupe.InFlight], outcomes[dedupe.Duplicate])
	if runs != 1 || outcomes[dedupe.Handled] != 1 || outcomes[dedupe.InFlight] != 2*perInstance-1 || outcomes[dedupe.Duplicate] != 2*perInstance-1 {
		t.Fatalf("runs=%d outcomes=%v: want the handler to run exactly once", runs, outcomes)
	}
}

func testFailureReleases(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.Open(t, time.Hour), h.Open(t, time.Hour)
	id := key(t)
	runs := 0
	fail := errors.New("downstream refused")
	handler := func(context.Context, *switchboard.EventCall) error {
		runs++
		if runs == 1 {
			return fail
		}
		return nil
	}
	var failed []error
	obs := dedupe.WithObserver(func(_ string, o dedupe.Outcome, err error) {
		if o == dedupe.Failed {
			failed = append(failed, err)
		}
	})
	ha := dedupe.Middleware(a, obs, dedupe.WithLease(time.Hour))(handler)
	hb := dedupe.Middleware(b, obs, dedupe.WithLease(time.Hour))(handler)
	if err := ha(ctx, Event("g", "t.x", id)); !errors.Is(err, fail) {
		t.Fatalf("first delivery: %v, want the handler's error", err)
	}
	// The lease is an hour: only a release lets the redelivery in at once.
	if err := hb(ctx, Event("g", "t.x", id)); err != nil {
		t.Fatalf("redelivery on another instance: %v", err)
	}
	if err := ha(ctx, Event("g", "t.x", id)); err != nil {
		t.Fatalf("third delivery: %v", err)
	}
	if runs != 2 || len(failed) != 1 {
		t.Fatalf("handler ran %d times (failures observed %d), want 2: failed once, then succeeded once", runs, len(failed))
	}
}

func testPanicReleases(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Open(t, time.Hour)
	id := key(t)
	runs := 0
	hd := dedupe.Middleware(s, dedupe.WithLease(time.Hour))(func(context.Context, *switchboard.EventCall) error {
		runs++
		if runs == 1 {
			panic("boom")
		}
		return nil
	})
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the handler's panic passed on", r)
			}
		}()
		_ = hd(ctx, Event("g", "t.x", id))
	}()
	if err := hd(ctx, Event("g", "t.x", id)); err != nil || runs != 2 {
		t.Fatalf("redelivery after a panic: err %v, runs %d; want it run again", err, runs)
	}
}

func testLeaseExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.Open(t, time.Hour), h.Open(t, time.Hour)
	k := key(t)
	dead := claim(ctx, t, a, k, Lease, dedupe.Claimed) // its holder now "dies"
	claim(ctx, t, b, k, Lease, dedupe.Busy)
	var taken dedupe.Claim
	eventually(t, "the dead holder's lease expiring", func() bool {
		c, err := b.Claim(ctx, k, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if c.Status == dedupe.Done {
			t.Fatal("an expired claim became done")
		}
		taken = c
		return c.Status == dedupe.Claimed
	})
	if taken.Token == dead.Token {
		t.Fatal("the new holder got the dead holder's token")
	}
	// The stale holder wakes up: it can neither renew nor release the new claim.
	if err := a.Extend(ctx, dead, time.Hour); !errors.Is(err, dedupe.ErrLeaseLost) {
		t.Fatalf("stale extend: %v, want ErrLeaseLost", err)
	}
	if err := a.Release(ctx, dead); err != nil {
		t.Fatal(err)
	}
	claim(ctx, t, a, k, time.Hour, dedupe.Busy)
	if err := b.Extend(ctx, taken, time.Hour); err != nil {
		t.Fatalf("the new holder's extend: %v", err)
	}
	if err := b.Complete(ctx, taken); err != nil {
		t.Fatal(err)
	}
	claim(ctx, t, a, k, time.Hour, dedupe.Done)
}

func testRenewal(t *testing.T, h Harness) {
	ctx := ctxT(t)
	a, b := h.Open(t, time.Hour), h.Open(t, time.Hour)
	id := key(t)
	ev := Event("g", "t.renew", id)
	k := dedupe.Key(ev.Info)
	checks := 0
	hd := dedupe.Middleware(a, dedupe.WithLease(Lease))(func(ctx context.Context, _ *switchboard.EventCall) error {
		// Work for four leases; another instance must find it busy throughout.
		tick := time.NewTicker(Lease / 4)
		defer tick.Stop()
		end := time.Now().Add(4 * Lease)
		for time.Now().Before(end) {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return fmt.Errorf("handler context ended: %w", context.Cause(ctx))
			}
			claim(ctx, t, b, k, time.Hour, dedupe.Busy)
			checks++
		}
		return nil
	})
	if err := hd(ctx, ev); err != nil {
		t.Fatal(err)
	}
	claim(ctx, t, b, k, time.Hour, dedupe.Done)
	if checks < 8 {
		t.Fatalf("only %d checks while the handler ran", checks)
	}
}

func testWindow(t *testing.T, h Harness) {
	ctx := ctxT(t)
	const window = 500 * time.Millisecond
	s := h.Open(t, window)
	k := key(t)
	c := claim(ctx, t, s, k, time.Minute, dedupe.Claimed)
	if err := s.Complete(ctx, c); err != nil {
		t.Fatal(err)
	}
	d := claim(ctx, t, s, k, time.Minute, dedupe.Done)
	if d.TTL > window {
		t.Fatalf("done ttl %v exceeds the window %v", d.TTL, window)
	}
	eventually(t, "the done key being forgotten after the window", func() bool {
		c, err := s.Claim(ctx, k, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return c.Status == dedupe.Claimed
	})
}

func testKeys(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Open(t, time.Hour)
	id := key(t)
	runs := map[string]int{}
	hd := dedupe.Middleware(s)(func(_ context.Context, ev *switchboard.EventCall) error {
		runs[ev.Info.Group+"/"+ev.Topic]++
		return nil
	})
	for range 2 {
		for _, ev := range []*switchboard.EventCall{
			Event("billing", "trip.ended", id), Event("audit", "trip.ended", id), Event("billing", "trip.started", id),
		} {
			if err := hd(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"billing/trip.ended", "audit/trip.ended", "billing/trip.started"} {
		if runs[k] != 1 {
			t.Fatalf("runs %v: want each group and topic to handle the id once", runs)
		}
	}
}
