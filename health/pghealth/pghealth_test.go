package pghealth_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/health/pghealth"
	"github.com/switchboard-dev/switchboard/internal/pgtest"
)

func TestCheckPingsTheDatabase(t *testing.T) {
	url := pgtest.BaseURL(t) // skips without a server, naming ./scripts/test
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	check := pghealth.Check(pool)
	if r := check(ctx); r.Status != health.Healthy || !strings.Contains(r.Message, "postgres ping") || !strings.Contains(r.Message, "connections in use") {
		t.Errorf("live database: %s %q, want healthy with the ping time", r.Status, r.Message)
	}
	pool.Close()
	if r := check(ctx); r.Status != health.Unhealthy || !strings.Contains(r.Message, "postgres ping failed") {
		t.Errorf("closed pool: %s %q, want unhealthy", r.Status, r.Message)
	}
}

func TestCheckFailsOnAnUnreachableServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if r := pghealth.Check(pool)(ctx); r.Status != health.Unhealthy || !strings.Contains(r.Message, "127.0.0.1") {
		t.Errorf("unreachable server: %s %q, want unhealthy naming it", r.Status, r.Message)
	}
}
