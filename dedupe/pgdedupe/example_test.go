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
