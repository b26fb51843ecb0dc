package pgdedupe_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	switchboard "github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/dedupe"
	"github.com/switchboard-dev/switchboard/dedupe/pgdedupe"
)

// Every instance of the billing service shares one table, so an event runs
// its handler once in the whole consumer group.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := pgdedupe.New(ctx, pool, pgdedupe.Options{Window: 7 * 24 * time.Hour})
	if err != nil {
		log.Fatal(err)
	}
	svc := switchboard.NewService("billing", "1.0.0",
		switchboard.WithConsumerMiddleware(dedupe.Middleware(store)))
	_ = svc // subscribe, then svc.Start(ctx, conn)
}

type payment struct {
	Trip  string `json:"trip"`
	Cents int64  `json:"cents"`
}

// A handler whose effects live in the same database marks the event done in
// its own transaction: the charge and the mark commit together, so a crash
// between them cannot charge twice.
func ExampleStore_CompleteTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	store, err := pgdedupe.New(ctx, pool, pgdedupe.Options{})
	if err != nil {
		log.Fatal(err)
	}
	svc := switchboard.NewService("billing", "1.0.0")
	switchboard.Topic[*payment]("trips.ended").Subscribe(svc, "billing", dedupe.Handler(store,
		func(ctx context.Context, p *payment) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
			if _, err := tx.Exec(ctx, `INSERT INTO charges (trip, cents) VALUES ($1, $2)`, p.Trip, p.Cents); err != nil {
				return err
			}
			if err := store.CompleteTx(ctx, tx); err != nil {
				return err // the lease was taken over: roll back
			}
			return tx.Commit(ctx)
		}))
	_ = svc // then svc.Start(ctx, conn)
}
