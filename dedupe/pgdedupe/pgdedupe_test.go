package pgdedupe_test

import (
	"context"
	"testing"
	"time"

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
