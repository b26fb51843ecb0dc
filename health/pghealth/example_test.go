package pghealth_test

import (
	"context"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-dev/switchboard"
	"github.com/switchboard-dev/switchboard/health"
	"github.com/switchboard-dev/switchboard/health/pghealth"
)

// Attach the check to a service before it runs; `switchboard health`,
// /readyz and the health reports on the bus then include "postgres".
func ExampleCheck() {
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:5432/postgres")
	if err != nil {
		log.Fatal(err)
	}
	svc := switchboard.NewService("ledger", "1.0.0")
	health.For(svc).Add("postgres", pghealth.Check(pool))
	// app.Run(svc) starts the checks with the service.
}
