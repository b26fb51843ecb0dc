package pgdedupe_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/dedupetest"
	"github.com/switchboard-dev/switchboard/dedupe/pgdedupe"
	"github.com/switchboard-dev/switchboard/internal/pgtest"
)

func TestConformance(t *testing.T) {
	url := pgtest.Schema(t)
	dedupetest.Run(t, dedupetest.Harness{Open: func(t *testing.T, window time.Duration) dedupe.Store {
		// A pool of its own, as another instance would have; one table per
		// window so that stores of different windows do not share rows.
		s, err := pgdedupe.New(context.Background(), pgtest.Pool(t, url), pgdedupe.Options{
			Table: "dedupe_" + window.String(), Window: window})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}})
}

func TestPruneDeletesExpiredRows(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t, pgtest.Schema(t))
	s, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Table: "d", Window: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		c, err := s.Claim(ctx, k, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if k == "a" {
			_ = s.Complete(ctx, c)
		}
	}
	var n int64
	deadline := time.Now().Add(10 * time.Second)
	for n < 2 && time.Now().Before(deadline) {
		m, err := s.Prune(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	var left int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM d").Scan(&left); err != nil {
		t.Fatal(err)
	}
	if n != 2 || left != 0 {
		t.Fatalf("pruned %d rows, %d left; want both expired rows gone", n, left)
	}
}

// The effects a handler writes in its transaction and the mark that its
// event is done commit together: a rolled-back transaction leaves the event
// to run again, a committed one makes every later delivery a duplicate, even
// if the handler then fails.
func TestCompleteTxCommitsTheMarkWithTheEffects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, pgtest.Schema(t))
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	s, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Table: "d"})
	if err != nil {
		t.Fatal(err)
	}
	// handle writes the effect and the mark in one transaction, then
	// commits or rolls back, then returns after.
	handle := func(commit bool, after error) func(context.Context, *switchboard.EventCall) error {
		return func(ctx context.Context, ev *switchboard.EventCall) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
			if _, err := tx.Exec(ctx, `INSERT INTO effects (id) VALUES ($1)`, ev.Info.ID); err != nil {
				return err
			}
			if err := s.CompleteTx(ctx, tx); err != nil {
				return err
			}
			if commit {
				if err := tx.Commit(ctx); err != nil {
					return err
				}
			}
			return after
		}
	}
	effects := func(id string) (n int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM effects WHERE id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deliver := func(id string, h func(context.Context, *switchboard.EventCall) error) error {
		return dedupe.Middleware(s)(h)(ctx, dedupetest.Event("g", "t", id))
	}
	boom := errors.New("boom")

	// Rolled back: no effect and no mark; the redelivery runs it.
	if err := deliver("rolled-back", handle(false, boom)); !errors.Is(err, boom) {
		t.Fatalf("first delivery: %v, want boom", err)
	}
	if n := effects("rolled-back"); n != 0 {
		t.Fatalf("a rolled-back transaction left %d effects", n)
	}
	if err := deliver("rolled-back", handle(true, nil)); err != nil {
		t.Fatal(err)
	}
	// Committed, then the handler failed: the mark stands and the
	// redelivery is a duplicate.
	if err := deliver("committed", handle(true, boom)); !errors.Is(err, boom) {
		t.Fatalf("first delivery: %v, want boom", err)
	}
	ran := false
	if err := deliver("committed", func(context.Context, *switchboard.EventCall) error { ran = true; return nil }); err != nil || ran {
		t.Fatalf("redelivery after a committed mark: err %v, handler ran %v; want a dropped duplicate", err, ran)
	}
	for id, want := range map[string]int{"rolled-back": 1, "committed": 1} {
		if n := effects(id); n != want {
			t.Fatalf("%s: %d effects, want %d", id, n, want)
		}
	}

	// Outside a dedupe handler there is no claim to complete.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := s.CompleteTx(ctx, tx); err == nil || !strings.Contains(err.Error(), "no dedupe claim") {
		t.Fatalf("CompleteTx without a claim: %v, want an error naming the missing claim", err)
	}
}

// A handler whose lease was taken over cannot mark the event done: its
// transaction is refused with ErrLeaseLost, so that its effects roll back.
func TestCompleteTxAfterTheLeaseWasTakenOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := pgtest.Schema(t)
	pool := pgtest.Pool(t, url)
	a, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Table: "d"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := pgdedupe.New(ctx, pgtest.Pool(t, url), pgdedupe.Options{Table: "d"})
	if err != nil {
		t.Fatal(err)
	}
	const lease = 300 * time.Millisecond
	var completeErr error
	wait := false
	h := func(hctx context.Context, ev *switchboard.EventCall) error {
		c, ok := dedupe.ClaimFrom(hctx)
		if !ok || c.Token == "" || c.Key != dedupe.Key(ev.Info) {
			t.Errorf("ClaimFrom: %+v %v, want the delivery's claim", c, ok)
		}
		// Another instance takes the key as if this one had stalled past
		// its lease (the renewal is the middleware's; the store's clock
		// decides).
		if _, err := pool.Exec(ctx, `UPDATE d SET expires_at = now() WHERE key = $1`, c.Key); err != nil {
			return err
		}
		if cl, err := b.Claim(ctx, c.Key, time.Minute); err != nil || cl.Status != dedupe.Claimed {
			t.Errorf("take-over claim: %+v %v", cl, err)
		}
		if wait {
			select {
			case <-hctx.Done():
			case <-ctx.Done():
				return errors.New("the renewal did not notice the lost lease")
			}
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		completeErr = a.CompleteTx(hctx, tx)
		return completeErr
	}
	for _, waitForRenewal := range []bool{false, true} {
		// Without waiting, the mark itself finds the token gone; waiting,
		// the renewal finds it first and cancels the handler's context.
		wait = waitForRenewal
		id := fmt.Sprintf("taken-over-%v", waitForRenewal)
		err = dedupe.Middleware(a, dedupe.WithLease(lease))(h)(ctx, dedupetest.Event("g", "t", id))
		if !errors.Is(completeErr, dedupe.ErrLeaseLost) || !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("%s: CompleteTx after a take-over: %v (delivery: %v), want ErrLeaseLost", id, completeErr, err)
		}
	}
}

// After the mark committed in the handler's transaction, the lease renewal
// that follows does not take the handler for one whose lease was lost.
func TestCompleteTxKeepsTheHandlerContextAlive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := pgtest.Pool(t, pgtest.Schema(t))
	s, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Table: "d"})
	if err != nil {
		t.Fatal(err)
	}
	const lease = 150 * time.Millisecond
	h := func(hctx context.Context, _ *switchboard.EventCall) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if err := s.CompleteTx(hctx, tx); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		// Several renewals (every lease/3) go by after the commit.
		select {
		case <-hctx.Done():
			return fmt.Errorf("handler context ended after CompleteTx: %w", context.Cause(hctx))
		case <-time.After(3 * lease):
		}
		return nil
	}
	if err := dedupe.Middleware(s, dedupe.WithLease(lease))(h)(ctx, dedupetest.Event("g", "t", "kept")); err != nil {
		t.Fatal(err)
	}
}
